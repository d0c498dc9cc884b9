"""The Pod Security Standards checker itself, on pods whose verdict the standard's page states."""

import copy

import pytest
from pod_security import violations

RESTRICTED_CONTAINER = {
    "name": "app",
    "image": "app:1",
    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
}
GOOD_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "good"},
    "spec": {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [RESTRICTED_CONTAINER],
        "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "claim-alice"}}],
    },
}


def changed(path, value):
    """GOOD_POD with one field set (``path`` is a list of keys and indexes)."""
    pod = copy.deepcopy(GOOD_POD)
    target = pod
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return pod


def test_a_compliant_pod_passes_both_levels():
    assert violations(GOOD_POD) == []
    assert violations(GOOD_POD, "baseline") == []


def test_an_unknown_level_is_refused_naming_it():
    with pytest.raises(ValueError, match="'strict'"):
        violations(GOOD_POD, "strict")


BASELINE_BREAKS = {
    "hostNetwork": (["spec", "hostNetwork"], True, "hostNetwork"),
    "hostPID": (["spec", "hostPID"], True, "hostPID"),
    "privileged": (["spec", "containers", 0, "securityContext", "privileged"], True, "privileged"),
    "NET_ADMIN": (
        ["spec", "containers", 0, "securityContext", "capabilities", "add"],
        ["NET_ADMIN"],
        "capabilities.add ['NET_ADMIN']",
    ),
    "hostPath": (["spec", "volumes"], [{"name": "root", "hostPath": {"path": "/"}}], "hostPath"),
    "hostPort": (["spec", "containers", 0, "ports"], [{"containerPort": 80, "hostPort": 80}], "hostPort 80"),
    "seccomp unconfined": (
        ["spec", "securityContext", "seccompProfile"],
        {"type": "Unconfined"},
        "must not be Unconfined",
    ),
    "sysctl": (["spec", "securityContext", "sysctls"], [{"name": "kernel.msgmax", "value": "1"}], "kernel.msgmax"),
    "selinux": (["spec", "securityContext", "seLinuxOptions"], {"type": "spc_t"}, "spc_t"),
    "procMount": (["spec", "containers", 0, "securityContext", "procMount"], "Unmasked", "procMount"),
    "apparmor": (
        ["spec", "containers", 0, "securityContext", "appArmorProfile"],
        {"type": "Unconfined"},
        "appArmorProfile",
    ),
    "hostProcess": (
        ["spec", "securityContext", "windowsOptions"],
        {"hostProcess": True},
        "hostProcess",
    ),
    "host probe": (
        ["spec", "containers", 0, "livenessProbe"],
        {"httpGet": {"host": "10.0.0.1", "port": 80}},
        "livenessProbe.httpGet.host",
    ),
}


@pytest.mark.parametrize("name", BASELINE_BREAKS)
def test_a_baseline_break_fails_both_levels_naming_it(name):
    path, value, expected = BASELINE_BREAKS[name]
    pod = changed(path, value)
    for level in ("baseline", "restricted"):
        found = violations(pod, level)
        assert any(expected in v for v in found), (level, found)


RESTRICTED_BREAKS = {
    "escalation allowed": (
        ["spec", "containers", 0, "securityContext", "allowPrivilegeEscalation"],
        True,
        "allowPrivilegeEscalation",
    ),
    "root allowed": (["spec", "securityContext", "runAsNonRoot"], False, "runAsNonRoot"),
    "uid 0": (["spec", "securityContext", "runAsUser"], 0, "runAsUser must not be 0"),
    "no seccomp": (["spec", "securityContext", "seccompProfile"], None, "seccompProfile"),
    "capabilities kept": (["spec", "containers", 0, "securityContext", "capabilities"], {}, "drop must include ALL"),
    "CHOWN added": (
        ["spec", "containers", 0, "securityContext", "capabilities", "add"],
        ["CHOWN"],
        "only NET_BIND_SERVICE",
    ),
    "nfs volume": (["spec", "volumes"], [{"name": "share", "nfs": {"server": "s", "path": "/"}}], "['nfs']"),
}


@pytest.mark.parametrize("name", RESTRICTED_BREAKS)
def test_a_restricted_break_passes_baseline_and_fails_restricted(name):
    path, value, expected = RESTRICTED_BREAKS[name]
    pod = changed(path, value)
    assert violations(pod, "baseline") == []
    assert any(expected in v for v in violations(pod)), violations(pod)


def test_container_settings_may_stand_in_for_the_pods():
    pod = changed(["spec", "securityContext"], {})
    pod["spec"]["containers"][0]["securityContext"].update(
        runAsNonRoot=True, seccompProfile={"type": "Localhost", "localhostProfile": "p.json"}
    )
    assert violations(pod) == []


def test_init_containers_are_checked_too():
    pod = changed(["spec", "initContainers"], [{"name": "setup", "image": "busybox"}])
    assert any("container 'setup': allowPrivilegeEscalation" in v for v in violations(pod))


def test_workload_templates_are_found_in_every_kind():
    template = {"metadata": {}, "spec": {"containers": [{"name": "bare", "image": "x"}]}}
    objects = [
        {"kind": kind, "metadata": {"name": "w"}, "spec": {"template": template}}
        for kind in ("Deployment", "StatefulSet", "DaemonSet", "Job")
    ]
    objects.append(
        {"kind": "CronJob", "metadata": {"name": "w"}, "spec": {"jobTemplate": {"spec": {"template": template}}}}
    )
    objects.append(
        {
            "kind": "InferenceService",
            "metadata": {"name": "w"},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "mlflow"}, "storageUri": "s3://m"}}},
        }
    )
    for obj in objects:
        found = violations(obj)
        assert found and all(v.startswith(f"{obj['kind']}/w") for v in found), found
    isvc = objects[-1]
    assert any("container 'model'" in v for v in violations(isvc))
    assert violations({"kind": "ConfigMap", "metadata": {"name": "c"}}) == []
