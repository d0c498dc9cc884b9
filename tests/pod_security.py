"""The Kubernetes Pod Security Standards, ``baseline`` and ``restricted``, as a check of rendered objects.

Written from https://kubernetes.io/docs/concepts/security/pod-security-standards/ (policy version
``latest``, Kubernetes 1.34): every control of both profiles, on the pod spec of a Pod, Deployment,
ReplicaSet, StatefulSet, DaemonSet, Job, CronJob (its ``jobTemplate``) or KServe InferenceService (its
predictor, a pod spec whose model/framework entry is one more container). No maintained PyPI package
does this offline (k8s-policy-guard, the nearest, is an unreleased CLI that does not know KServe).

Not covered: the exemptions for ``spec.os.name: windows`` pods (the project renders none).

    violations(obj)             -> ["Deployment/x: container 'c': allowPrivilegeEscalation must be false", ...]
    violations(obj, "baseline") -> only the baseline controls
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

LEVELS = ("baseline", "restricted")

BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
SECCOMP_RESTRICTED = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
#: The predictor entries of an InferenceService that are containers (KServe v1beta1).
KSERVE_MODEL_KEYS = (
    "model",
    "sklearn",
    "xgboost",
    "tensorflow",
    "pytorch",
    "triton",
    "onnx",
    "pmml",
    "lightgbm",
    "paddle",
    "huggingface",
)
WORKLOADS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController")


def pod_specs(obj: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(where, pod metadata, pod spec) for every pod template in ``obj``; nothing for other kinds."""
    kind = obj.get("kind", "")
    where = f"{kind}/{(obj.get('metadata') or {}).get('name', '?')}"
    spec = obj.get("spec") or {}
    if kind == "Pod":
        yield where, obj.get("metadata") or {}, spec
    elif kind in WORKLOADS:
        template = spec.get("template") or {}
        yield where, template.get("metadata") or {}, template.get("spec") or {}
    elif kind == "CronJob":
        template = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")) or {}
        yield where, template.get("metadata") or {}, template.get("spec") or {}
    elif kind == "InferenceService":
        for component in ("predictor", "transformer", "explainer"):
            if component not in spec:
                continue
            pod = dict(spec[component])
            extra = [{"name": key, **pod.pop(key)} for key in KSERVE_MODEL_KEYS if isinstance(pod.get(key), dict)]
            pod["containers"] = [*(pod.get("containers") or []), *extra]
            yield f"{where} {component}", obj.get("metadata") or {}, pod


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(field) or []:
            yield f"container {container.get('name', '?')!r}", container


def _baseline(metadata: Mapping[str, Any], spec: Mapping[str, Any]) -> Iterator[str]:
    pod_sc = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            yield f"{field} must be unset or false (host namespaces)"
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        yield "securityContext.windowsOptions.hostProcess must be unset or false"
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            yield f"volume {volume.get('name')!r}: hostPath volumes are forbidden"
    yield from _apparmor_selinux_seccomp("pod securityContext", pod_sc, allow_unset=True)
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            yield f"sysctl {sysctl.get('name')!r} is not in the safe set"
    for key, value in (metadata.get("annotations") or {}).items():
        if key.startswith(APPARMOR_ANNOTATION) and value != "runtime/default" and not value.startswith("localhost/"):
            yield f"annotation {key}: AppArmor profile {value!r} must be runtime/default or localhost/*"
    for name, container in _containers(spec):
        sc = container.get("securityContext") or {}
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            yield f"{name}: windowsOptions.hostProcess must be unset or false"
        if sc.get("privileged"):
            yield f"{name}: privileged must be unset or false"
        added = set((sc.get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        if added:
            yield f"{name}: capabilities.add {sorted(added)} beyond the baseline set"
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                yield f"{name}: hostPort {port['hostPort']} must be unset or 0"
        for probe, handler in _handlers(container):
            if handler.get("host"):
                yield f"{name}: {probe}.host must be unset (host probes)"
        yield from (f"{name}: {v}" for v in _apparmor_selinux_seccomp("securityContext", sc, allow_unset=True))
        if sc.get("procMount", "Default") != "Default":
            yield f"{name}: procMount must be unset or Default"


def _handlers(container: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        for kind in ("httpGet", "tcpSocket"):
            handler = (container.get(probe) or {}).get(kind)
            if handler:
                yield f"{probe}.{kind}", handler
    for hook in ("postStart", "preStop"):
        for kind in ("httpGet", "tcpSocket"):
            handler = ((container.get("lifecycle") or {}).get(hook) or {}).get(kind)
            if handler:
                yield f"lifecycle.{hook}.{kind}", handler


def _apparmor_selinux_seccomp(where: str, sc: Mapping[str, Any], allow_unset: bool) -> Iterator[str]:
    apparmor = (sc.get("appArmorProfile") or {}).get("type")
    if apparmor is not None and apparmor not in APPARMOR_TYPES:
        yield f"{where}.appArmorProfile.type {apparmor!r} must be RuntimeDefault or Localhost"
    selinux = sc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES:
        yield f"{where}.seLinuxOptions.type {selinux['type']!r} is not a container type"
    for field in ("user", "role"):
        if selinux.get(field):
            yield f"{where}.seLinuxOptions.{field} must be unset"
    seccomp = (sc.get("seccompProfile") or {}).get("type")
    if seccomp == "Unconfined":
        yield f"{where}.seccompProfile.type must not be Unconfined"


def _restricted(spec: Mapping[str, Any]) -> Iterator[str]:
    pod_sc = spec.get("securityContext") or {}
    for volume in spec.get("volumes") or []:
        types = set(volume) - {"name"}
        if not types <= RESTRICTED_VOLUMES:
            yield f"volume {volume.get('name')!r}: type {sorted(types - RESTRICTED_VOLUMES)} is not allowed"
    if pod_sc.get("runAsUser") == 0:
        yield "pod securityContext.runAsUser must not be 0"
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_RESTRICTED:
        yield f"pod securityContext.seccompProfile.type {pod_seccomp!r} must be RuntimeDefault or Localhost"
    for name, container in _containers(spec):
        sc = container.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"{name}: allowPrivilegeEscalation must be false"
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is None and pod_sc.get("runAsNonRoot") is not True):
            yield f"{name}: runAsNonRoot must be true (on the pod or the container)"
        if sc.get("runAsUser") == 0:
            yield f"{name}: runAsUser must not be 0"
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in SECCOMP_RESTRICTED:
            yield f"{name}: seccompProfile.type {seccomp!r} must be RuntimeDefault or Localhost"
        elif seccomp is None and pod_seccomp is None:
            yield f"{name}: seccompProfile.type must be RuntimeDefault or Localhost (on the pod or the container)"
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            yield f"{name}: capabilities.drop must include ALL"
        added = set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            yield f"{name}: capabilities.add may hold only NET_BIND_SERVICE, not {sorted(added)}"


def pod_violations(metadata: Mapping[str, Any], spec: Mapping[str, Any], level: str = "restricted") -> list[str]:
    """What the pod spec breaks of ``level`` (``baseline`` or ``restricted``, which includes baseline)."""
    if level not in LEVELS:
        raise ValueError(f"level {level!r}: expected one of {', '.join(LEVELS)}")
    found = list(_baseline(metadata, spec))
    if level == "restricted":
        found.extend(_restricted(spec))
    return found


def violations(obj: Mapping[str, Any], level: str = "restricted") -> list[str]:
    """Every violation of ``level`` in the pod templates of ``obj``, each prefixed with kind/name."""
    return [
        f"{where}: {problem}"
        for where, metadata, spec in pod_specs(obj)
        for problem in pod_violations(metadata, spec, level)
    ]


def has_pod_spec(obj: Mapping[str, Any]) -> bool:
    """Whether ``obj`` is a kind whose pods the standard applies to."""
    return any(True for _ in pod_specs(obj))
