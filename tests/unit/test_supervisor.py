"""The supervisor's plan: which parts, in which order, with which environment, health checks and logs (pure)."""

import json

import pytest
import requests

from mlopshub import settings, supervisor
from mlopshub.configure import Runtime

RUNTIME = Runtime(
    hub_port=10001,
    proxy_api_port=10002,
    mlflow_port=10003,
    pipeline_port=10004,
    admin_token="a" * 48,
    mlflow_admin_password="p",
    mlflow_secret_key="s",
    crypt_key="00" * 32,
    mlflow_service_token="m" * 64,
    pipeline_service_token="q" * 64,
    models_port=10005,
    models_service_token="w" * 64,
    proxy_auth_token="x" * 64,
)
INHERITED = {"PATH": "/usr/bin", "MLOPSHUB_ADMIN_TOKEN": "from-the-shell", "MLOPSHUB_PORT": "1"}


@pytest.fixture
def local(tmp_path) -> settings.Settings:
    return settings.from_env({"MLOPSHUB_DATA_DIR": str(tmp_path), "MLOPSHUB_PORT": "8123"})


def plan(s: settings.Settings) -> dict[str, supervisor.Part]:
    return {part.name: part for part in supervisor.plan(s, RUNTIME, INHERITED, ["jupyterhub", "-f", "config.py"])}


def test_parts_start_in_order_mlflow_models_pipeline_proxy_then_the_hub(local):
    # The models service before the pipeline (it switches endpoints there), the proxy before the hub (routes).
    assert list(plan(local)) == ["mlflow", "models", "pipeline", "proxy", "hub"] == list(supervisor.PART_NAMES)


def test_the_proxy_runs_on_the_public_address_with_its_api_on_loopback_and_its_token_in_the_environment(local):
    proxy = plan(local)["proxy"]
    arguments = dict(zip(proxy.command[1::2], proxy.command[2::2], strict=False))
    assert (arguments["--ip"], arguments["--port"]) == ("127.0.0.1", "8123")
    assert (arguments["--api-ip"], arguments["--api-port"]) == ("127.0.0.1", "10002")
    assert arguments["--error-target"] == "http://127.0.0.1:10001/hub/error"
    assert "x" * 64 not in " ".join(proxy.command)
    assert proxy.env["CONFIGPROXY_AUTH_TOKEN"] == "x" * 64
    assert proxy.health == ["http://127.0.0.1:8123/_chp_healthz"]


def test_mlflow_migrates_its_database_before_it_starts(local):
    ((what, command),) = plan(local)["mlflow"].before
    assert what == "database migrations"
    assert command[1:] == ["-m", "mlflow", "db", "upgrade", f"sqlite:///{local.data_dir / 'mlflow' / 'mlflow.sqlite'}"]


def test_each_service_is_healthy_on_its_own_address_and_the_hub_through_the_proxy(local):
    parts = plan(local)
    assert parts["mlflow"].health == ["http://127.0.0.1:10003/services/mlflow/health"]
    assert parts["pipeline"].health == ["http://127.0.0.1:10004/services/pipeline/health"]
    assert parts["models"].health == ["http://127.0.0.1:10005/services/models/health"]
    assert parts["hub"].health == [
        "http://127.0.0.1:8123/hub/health",
        "http://127.0.0.1:8123/services/mlflow/health",
        "http://127.0.0.1:8123/services/pipeline/health",
        "http://127.0.0.1:8123/services/models/health",
    ]


def test_each_part_has_its_log_and_pid_file_in_the_data_dir(local):
    for name, part in plan(local).items():
        assert part.log == local.data_dir / "logs" / f"{name}.log"
        assert part.pid_file == local.data_dir / "run" / f"{name}.pid"


def test_services_get_their_hub_token_and_the_hub_gets_the_settings_but_not_the_admin_token(local):
    parts = plan(local)
    assert parts["mlflow"].env["JUPYTERHUB_API_TOKEN"] == "m" * 64
    assert parts["pipeline"].env["JUPYTERHUB_API_TOKEN"] == "q" * 64
    assert parts["pipeline"].env["JUPYTERHUB_API_URL"] == "http://127.0.0.1:10001/hub/api"
    assert parts["models"].env["JUPYTERHUB_API_TOKEN"] == "w" * 64
    # The pipeline switches endpoints through the models service's control socket.
    assert parts["pipeline"].env["MLOPSHUB_SERVING_SOCKET"] == str(local.data_dir / "pipeline/control/serving.sock")
    hub = parts["hub"].env
    assert "MLOPSHUB_ADMIN_TOKEN" not in hub
    assert (hub["MLOPSHUB_DATA_DIR"], hub["MLOPSHUB_PORT"]) == (str(local.data_dir), "8123")
    assert all("MLOPSHUB_ADMIN_TOKEN" not in part.env for part in parts.values())


@pytest.mark.parametrize(
    ("pause", "lived", "expected"),
    [(1.0, 0.5, 2.0), (16.0, 3.0, 32.0), (60.0, 1.0, 60.0), (32.0, supervisor.STABLE, supervisor.FIRST_PAUSE)],
)
def test_restart_pause_doubles_while_a_part_keeps_dying_and_resets_after_a_stable_run(pause, lived, expected):
    assert supervisor.next_pause(pause, lived) == expected


def test_log_tail_is_the_last_lines(tmp_path):
    log = tmp_path / "mlflow.log"
    log.write_text("".join(f"line {n}\n" for n in range(100)))
    assert supervisor.log_tail(log, 3) == "line 97\nline 98\nline 99"
    assert supervisor.log_tail(tmp_path / "missing.log") == ""


def health_answer(status: int, body: object) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer._content = json.dumps(body).encode()
    return answer


def test_a_broken_audit_log_stops_the_start_at_once_naming_the_entry():
    broken = health_answer(503, {"status": "audit log broken", "audit": {"first_bad_entry": 7, "problem": "changed"}})
    assert "entry 7: changed" in supervisor.refusal(broken) and "mlopshub audit verify" in supervisor.refusal(broken)
    # Anything else is waited for until the timeout: a part still starting, or answering something else.
    assert supervisor.refusal(health_answer(503, {"status": "starting"})) is None
    assert supervisor.refusal(health_answer(502, {"status": "audit log broken"})) is None
    assert supervisor.refusal(health_answer(200, {"status": "ok"})) is None
