"""Attacks from inside real workspaces (issue 10, items 1-4 and 8): each test does what the attacker does.

A workspace runs arbitrary code as its owner's Unix account; its files,
symlinks, run tags and requests are attacker-controlled. Each test runs the
attack in a workspace kernel (``Platform.execute``), as a data scientist
would, and asserts the secure behaviour: the attack gets nothing.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import threading
from pathlib import Path

import pytest
import requests
import yaml
from adversary import CREDIT, GRANTED_MODEL, live_endpoints, until
from release_flow import FORMATS, MAKE_PROJECT, ROWS, TRAIN

pytestmark = pytest.mark.integration

#: Replaces the DVC cache object of ``data/loans.csv`` in ``~/{project}`` with a symlink to ``{target}``.
POISON_CACHE = r"""
import os, yaml
root = os.path.expanduser("~/{project}")
md5 = yaml.safe_load(open(os.path.join(root, "data", "loans.csv.dvc")))["outs"][0]["md5"]
cached = os.path.join(root, ".dvc", "cache", "files", "md5", md5[:2], md5[2:])
os.unlink(cached)
os.symlink({target!r}, cached)
print(cached)
"""

#: Points a run's project tag (which the pipeline reads the hold-out set and batch input from) at ``{project}``.
RETAG = r"""
import mlflow
mlflow.MlflowClient().set_tag({run!r}, "mlopshub.project", {project!r})
print("tagged")
"""


def publish_batch(pipeline, run_id: str, name: str) -> tuple[int, str, dict | None]:
    """Publish ``run_id`` as a batch model scoring ``data/loans.csv`` at main: (status, text, final release)."""
    body = {
        "model_uri": f"runs:/{run_id}/model",
        "name": name,
        "kind": "batch",
        "batch": {"input": "data/loans.csv", "rev": "main"},
    }
    response = pipeline.call("POST", "releases", body)
    if response.status_code != 201:
        return response.status_code, response.text, None
    release = pipeline.wait(response.json()["id"])
    return response.status_code, response.text, release


def readable_text(platform, attacker, folder: Path) -> str:
    """Everything under ``folder`` that ``attacker``'s workspace can read."""
    code = (
        "import os\n"
        f"for base, _, files in os.walk({str(folder)!r}):\n"
        "    for name in files:\n"
        "        try:\n"
        "            print(open(os.path.join(base, name), errors='replace').read())\n"
        "        except OSError:\n"
        "            pass\n"
    )
    return attacker.run(platform, code)


def test_batch_release_cannot_read_the_admin_token_through_a_dvc_cache_symlink(platform, bob, victor):
    # Issue 10, item 1: a versioned project whose DVC cache object is a symlink to the hub's admin token.
    admin_token_file = platform.data_dir / "secrets" / "admin-token"
    token = admin_token_file.read_text().strip()
    assert "project ready" in bob.run(platform, MAKE_PROJECT.format(project="evil", seed=3, push=True))
    run_id = bob.run(platform, TRAIN.format(project="evil", c=1.0)).strip().splitlines()[-1]
    cached = bob.run(platform, POISON_CACHE.format(project="evil", target=str(admin_token_file))).strip()
    evil = platform.data_dir / "homes" / bob.name / "evil"
    assert "tagged" in bob.run(platform, RETAG.format(run=run_id, project=str(evil)))

    status, text, release = publish_batch(bob.pipeline(platform), run_id, "evil-batch")

    assert token not in text
    runs = bob.pipeline(platform).call("GET", "models/evil-batch/runs")
    assert token not in runs.text
    audit = victor.pipeline(platform).call("GET", "audit")
    assert token not in audit.text
    output = platform.data_dir / "pipeline" / "batch" / "evil-batch"
    written = [p.read_text(errors="replace") for p in output.rglob("*") if p.is_file()] if output.exists() else []
    assert not any(token in content for content in written)
    if release is not None:
        assert token not in json.dumps(release)
        assert release["state"] in ("failed", "gates_failed"), release
        assert Path(cached).name in release["reason"] or "data/loans.csv" in release["reason"], release["reason"]
    else:
        assert 400 <= status < 500, text
        assert Path(cached).name in text or "data/loans.csv" in text, text


def test_run_tag_cannot_point_the_pipeline_at_another_teams_project(platform, alice, bob):
    # Issue 10, item 2: a retail-scoring run tagged with an sme-credit member's project folder.
    victim = platform.data_dir / "homes" / alice.name / "credit"
    loans = (victim / "data" / "loans.csv").read_text().splitlines()
    telltales = [line.split(",")[0] for line in loans[1:6]]  # amounts of the victim's first rows, as written
    holdout_md5 = yaml.safe_load((victim / "data" / "holdout.csv.dvc").read_text())["outs"][0]["md5"]
    run_id = bob.run(platform, TRAIN.format(project="credit", c=1.0)).strip().splitlines()[-1]
    assert "tagged" in bob.run(platform, RETAG.format(run=run_id, project=str(victim)))

    status, text, release = publish_batch(bob.pipeline(platform), run_id, "peek-batch")

    seen = readable_text(platform, bob, platform.data_dir / "pipeline" / "batch" / "peek-batch")
    seen += bob.pipeline(platform).call("GET", "models/peek-batch/runs").text + text
    if release is not None:
        seen += json.dumps(release)
        metrics = next((g for g in release["gate_results"] if g["name"] == "metrics"), {})
        holdout = (metrics.get("details") or {}).get("holdout") or {}
        assert holdout.get("version") != holdout_md5, "the metrics gate scored on the other team's hold-out set"
        assert release["state"] in ("failed", "gates_failed"), release
        assert str(victim) in release["reason"], release["reason"]
    else:
        assert 400 <= status < 500 and str(victim) in text, text
    assert not [value for value in telltales if value in seen], "the other team's rows reached the attacker"


SWAP_ATTEMPTS = r"""
import os
models, name, version = {models!r}, {name!r}, {version!r}
attempts = {{
    "append to MLmodel": lambda: open(os.path.join(models, name, version, "MLmodel"), "a").close(),
    "rename the model folder": lambda: os.rename(os.path.join(models, name), os.path.join(models, name + "-old")),
    "make a new version folder": lambda: os.makedirs(os.path.join(models, name + "-new", "1")),
}}
outcomes = {{}}
for what, attempt in attempts.items():
    try:
        attempt()
        outcomes[what] = "done"
    except PermissionError:
        outcomes[what] = "PermissionError"
    except OSError as error:
        outcomes[what] = type(error).__name__
print(outcomes)
"""

#: The attacker's constant model: the run's own model, made to say "default" for everyone.
CONSTANT_MODEL = r"""
import os, pickle, mlflow.sklearn
model = mlflow.sklearn.load_model("runs:/{run}/model")
model.coef_[:] = 0
model.intercept_[:] = 10
path = os.path.expanduser("~/constant.pkl")
with open(path, "wb") as handle:
    pickle.dump(model, handle)
print(path)
"""


def test_swapped_model_copy_is_never_served(platform, alice, victor):
    # Issue 10, item 3: the pipeline's copy of a version is swapped, then the model server restarts.
    pipeline = alice.pipeline(platform)
    release = pipeline.wait(pipeline.publish(alice.runs[1], "credit-swap")["id"])
    assert release["state"] == "awaiting_approval", release
    # The registry's local copies: cache_dir(<data dir>/pipeline) / team / model / version (services/pipeline).
    models = platform.data_dir / "pipeline" / "models" / CREDIT
    answer = pipeline.invoke("credit-swap", "staging", FORMATS["dataframe_split"])
    assert answer.status_code == 200, answer.text
    honest = answer.json()["predictions"]

    outcomes = ast.literal_eval(
        alice.run(platform, SWAP_ATTEMPTS.format(models=str(models), name="credit-swap", version=release["version"]))
    )
    assert set(outcomes.values()) == {"PermissionError"}, outcomes

    # A stronger attacker (root here) changes the copied model file; the server then restarts from the copy.
    # The last line: MLflow prints download progress before it.
    constant = Path(alice.run(platform, CONSTANT_MODEL.format(run=alice.runs[1])).strip().splitlines()[-1])
    copied = next(p for p in (models / "credit-swap" / release["version"]).rglob("model.*") if p.is_file())
    copied.write_bytes(constant.read_bytes())
    swapped = [1] * len(ROWS)
    assert honest != swapped, "the honest model must answer differently from the constant one"
    served = next(e for e in live_endpoints(platform, victor) if (e["model"], e["stage"]) == ("credit-swap", "staging"))
    os.kill(served["pid"], signal.SIGKILL)

    def restarted_or_gone():
        now = [e for e in live_endpoints(platform, victor) if (e["model"], e["stage"]) == ("credit-swap", "staging")]
        return not now or now[0]["pid"] != served["pid"]

    until(restarted_or_gone, "the staging server of credit-swap restarted or was stopped")
    answer = pipeline.invoke("credit-swap", "staging", FORMATS["dataframe_split"])
    assert not (answer.status_code == 200 and answer.json().get("predictions") == swapped), "the swapped model answers"
    entries = [e for e in victor.pipeline(platform).call("GET", "audit").json() if "credit-swap" in json.dumps(e)]
    assert any(word in json.dumps(e).lower() for e in entries for word in ("mismatch", "digest")), entries[-3:]


#: Every listening socket the kernel can see, each asked to score as an MLflow server would be.
PROBE_LISTENERS = r"""
import concurrent.futures, http.client, ipaddress, json, socket
body = json.dumps({scoring!s})

def tcp(path, family):
    found = []
    try:
        lines = open(path).read().splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        address, port = fields[1].split(":")
        if fields[3] != "0A":  # LISTEN
            continue
        raw = bytes.fromhex(address)
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # /proc prints host-order words
        host = str(ipaddress.ip_address(raw))
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if family == 4 else "::1"
        found.append(("tcp", host, int(port, 16)))
    return found

def unix():
    found = []
    for line in open("/proc/net/unix").read().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and int(fields[3], 16) & 0x10000:  # __SO_ACCEPTCON: listening
            found.append(("unix", fields[7], 0))
    return found

class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=3)
        self.unix_path = "\0" + path[1:] if path.startswith("@") else path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(3)
        self.sock.connect(self.unix_path)

def score(listener):
    kind, where, port = listener
    try:
        connection = UnixHTTPConnection(where) if kind == "unix" else http.client.HTTPConnection(where, port, timeout=3)
        connection.request("POST", "/invocations", body, {{"Content-Type": "application/json"}})
        answer = connection.getresponse()
        text = answer.read(2000).decode(errors="replace")
        return [kind, where, port, answer.status, text] if "predictions" in text else None
    except Exception:
        return None

listeners = tcp("/proc/net/tcp", 4) + tcp("/proc/net/tcp6", 6) + unix()
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    answered = [a for a in pool.map(score, listeners) if a]
print(json.dumps({{"listeners": len(listeners), "answered": answered}}))
"""


def test_model_servers_are_unreachable_from_a_workspace(platform, bob, victor, in_production):
    # Issue 10, item 4: every team's model servers listen somewhere; none may score for a workspace.
    assert {(e["model"], e["stage"]) for e in live_endpoints(platform, victor)} >= {
        (GRANTED_MODEL, "staging"),
        (GRANTED_MODEL, "production"),
    }
    found = json.loads(
        bob.run(platform, PROBE_LISTENERS.format(scoring=json.dumps(FORMATS["dataframe_split"]))).strip()
    )
    assert found["listeners"] > 0
    assert found["answered"] == [], found["answered"]


#: Asks the models service's control socket to list and to stop endpoints, as a workspace would try.
CONTROL = r"""
import json, socket
out = {{}}
for what, request in (("list", b"GET /endpoints HTTP/1.0\r\n\r\n"),
                      ("stop", b"DELETE /endpoints/{model}/production HTTP/1.0\r\n\r\n")):
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(3)
        s.connect({path!r})
        s.sendall(request)
        out[what] = s.recv(200).decode(errors="replace")
    except OSError as error:
        out[what] = type(error).__name__
print(json.dumps(out))
"""


def test_a_workspace_cannot_switch_endpoints_through_the_models_services_control_socket(
    platform, bob, victor, in_production
):
    # Issue 12: the pipeline switches endpoints through a socket of the models service; only the platform may.
    path = platform.data_dir / "pipeline" / "control" / "serving.sock"
    assert path.is_socket()
    out = json.loads(bob.run(platform, CONTROL.format(path=str(path), model=GRANTED_MODEL)).strip())
    assert out == {"list": "PermissionError", "stop": "PermissionError"}
    assert (GRANTED_MODEL, "production") in {(e["model"], e["stage"]) for e in live_endpoints(platform, victor)}


# --- item 8: the smaller ones ----------------------------------------------------------------------


def model_versions(platform, member, name: str) -> list[dict]:
    """Versions of registered model ``name`` in the member's team workspace, as MLflow lists them."""
    response = requests.get(
        f"{platform.url}/services/mlflow/api/2.0/mlflow/model-versions/search",
        params={"filter": f"name='{name}'"},
        headers={"Authorization": f"Bearer {member.token}", "X-MLFLOW-WORKSPACE": member.team},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json().get("model_versions", [])


def registered_models(platform, member) -> set[str]:
    response = requests.get(
        f"{platform.url}/services/mlflow/api/2.0/mlflow/registered-models/search",
        params={"max_results": 1000},
        headers={"Authorization": f"Bearer {member.token}", "X-MLFLOW-WORKSPACE": member.team},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {model["name"] for model in response.json().get("registered_models", [])}


def test_concurrent_publishes_of_one_run_make_one_model_version(platform, alice):
    pipeline = alice.pipeline(platform)
    body = {"model_uri": f"runs:/{alice.runs[0]}/model", "name": "credit-race", "kind": "online"}
    start = threading.Barrier(6)
    statuses: list[int] = []

    def publish() -> None:
        start.wait()
        statuses.append(pipeline.call("POST", "releases", body).status_code)

    threads = [threading.Thread(target=publish) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert sorted(statuses) == [201, 409, 409, 409, 409, 409]
    assert len(model_versions(platform, alice, "credit-race")) == 1


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("name", {"name": ".."}),
        ("name", {"name": "%2e%2e"}),
        ("name", {"name": "credit/../x"}),
        ("model_uri", {"model_uri": "runs:/{run}/../model"}),
        ("model_uri", {"model_uri": "runs:/{run}/%2e%2e/model"}),
        ("model_uri", {"model_uri": "runs:/{run}/model/%2e%2e/%2e%2e"}),
    ],
)
def test_dot_dot_model_name_is_refused_without_a_registered_model(platform, alice, field, change):
    before = registered_models(platform, alice)
    body = {"model_uri": f"runs:/{alice.runs[0]}/model", "name": "credit-dotdot", "kind": "online"}
    body.update({key: value.format(run=alice.runs[0]) for key, value in change.items()})

    answer = alice.pipeline(platform).call("POST", "releases", body)

    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json().get("field") == field, answer.text
    assert registered_models(platform, alice) == before


@pytest.mark.parametrize("path", ["models/%2e%2e/rollback", "models/../runs", "releases/%2e%2e/approve"])
def test_dot_dot_in_a_pipeline_path_is_a_4xx(platform, alice, path):
    answer = alice.pipeline(platform).call("POST", path, {"reason": "x", "comment": "x"})
    assert 400 <= answer.status_code < 500, answer.text


def test_unknown_and_foreign_release_ids_answer_the_same(platform, bob, in_production):
    # bob is no validator: approving alice's release and one that does not exist must look alike.
    foreign = in_production["id"]
    unknown = "rel-" + "0" * 12
    pipeline = bob.pipeline(platform)
    for action in ("approve", "reject"):
        to_foreign = pipeline.call("POST", f"releases/{foreign}/{action}", {"comment": "x", "reason": "x"})
        to_unknown = pipeline.call("POST", f"releases/{unknown}/{action}", {"comment": "x", "reason": "x"})
        assert to_foreign.status_code == to_unknown.status_code, (action, to_foreign.text, to_unknown.text)
        assert to_foreign.text.replace(foreign, "<id>") == to_unknown.text.replace(unknown, "<id>"), action
    assert pipeline.call("GET", f"releases/{foreign}").text.replace(foreign, "<id>") == pipeline.call(
        "GET", f"releases/{unknown}"
    ).text.replace(unknown, "<id>")


def test_long_file_name_in_lab_extension_is_a_400(platform, alice):
    name = "a" * 300
    for path, method, params, body in [
        ("mlopshub-lab/data/project", "GET", {"path": name}, None),
        ("mlopshub-lab/data/history", "GET", {"path": f"credit/{name}"}, None),
        ("mlopshub-lab/data/track", "POST", None, {"path": f"credit/{name}"}),
    ]:
        answer = platform.workspace(alice.name, path, alice.token, method, params=params, json=body)
        assert answer.status_code == 400, (path, answer.status_code, answer.text[:300])
        assert "a" * 40 in answer.json()["message"], answer.text[:300]


def test_deeply_nested_json_on_an_endpoint_is_a_400(platform, alice, in_production):
    nested = '{"inputs": ' + "[" * 50_000 + "]" * 50_000 + "}"
    for stage in ("staging", "production"):
        answer = requests.post(
            f"{platform.url}/services/models/{GRANTED_MODEL}/{stage}/invocations",
            data=nested,
            headers={**alice.headers(), "Content-Type": "application/json"},
            timeout=60,
        )
        assert answer.status_code == 400, (stage, answer.status_code, answer.text[:300])


#: What the attack's paths are made of; a log holding a run this long holds a path (nearly) whole.
MARKER = "q"
LOGGED_WHOLE = MARKER * 1000


def logs_holding_a_path(platform) -> list[str]:
    """Every log file of the platform in which a request path of the attack appears (almost) whole."""
    folders = [platform.data_dir / "logs", platform.data_dir / "pipeline" / "logs"]
    files = [p for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file()]
    return [str(p.relative_to(platform.data_dir)) for p in files if LOGGED_WHOLE in p.read_text(errors="replace")]


def largest_path_accepted(url: str, headers: dict[str, str]) -> int:
    """The longest path (of 30 MB, 1 MB, 64 kB, 16 kB, 8 kB) that the proxy passes on at ``url``."""
    for size in (30_000_000, 1_000_000, 64_000, 16_000, 8_000):
        try:
            answer = requests.get(url + MARKER * size, headers=headers, timeout=60)
        except requests.RequestException:  # refused or reset by the proxy: not passed on
            continue
        if answer.status_code not in (413, 414, 431):
            return size
    return 0


def test_huge_request_path_is_not_logged_whole(platform, alice, in_production):
    # Measured by content, not size: other requests (the membership service's polls) log while this runs.
    targets = [
        f"{platform.url}/hub/",
        f"{platform.url}/services/pipeline/api/releases/",
        f"{platform.url}/services/models/{GRANTED_MODEL}/staging/",
        f"{platform.url}/services/mlflow/",
    ]
    sent = [largest_path_accepted(url, alice.headers()) for url in targets]
    assert all(size > len(LOGGED_WHOLE) for size in sent), sent
    assert logs_holding_a_path(platform) == [], f"paths of {sent} characters written whole"
