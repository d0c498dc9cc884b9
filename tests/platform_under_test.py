"""A real mlopshub platform for tests: started with `mlopshub up` in a temporary data dir.

Nothing is mocked: the supervisor, the hub, configurable-http-proxy, MLflow,
the pipeline, the idle culler and the JupyterLab workspaces are the real ones; users sign up through the
real sign-up page and are authorized by the admin through the real page.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests
import websocket

from mlopshub.launcher import free_port

REPO = Path(__file__).resolve().parents[1]
MLOPSHUB = [sys.executable, "-m", "mlopshub.cli"]


def reachable_dir(tmp_path_factory: Any) -> Path:
    """A fresh data dir that workspaces running as other Unix users can pass through.

    pytest's own temporary folders are private to the user running the tests.
    """
    path = Path(tempfile.mkdtemp(prefix="mlopshub-test-", dir="/tmp"))
    path.chmod(0o755)
    return path


@dataclass
class Platform:
    """One running platform and the handles tests need."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    admin_token: str = field(default_factory=lambda: secrets.token_hex(24))
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "MLOPSHUB_DATA_DIR": str(self.data_dir),
            "MLOPSHUB_PORT": str(self.port),
            "MLOPSHUB_ADMIN_TOKEN": self.admin_token,
            "MLOPSHUB_GPU": "no",
            **self.extra_env,
        }

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*MLOPSHUB, *args], env=self.env, capture_output=True, text=True, cwd=REPO, timeout=timeout
        )
        if check and result.returncode != 0:
            # `up` names the part that failed with its log's last lines; the supervisor's and the hub's go with it.
            tails = []
            for name in ("supervisor.log", "hub.log"):
                log = self.data_dir / "logs" / name
                tails.append(f"--- {name}\n{log.read_text()[-3000:]}" if log.exists() else "")
            raise AssertionError(
                f"mlopshub {' '.join(args)} failed: {result.stdout}\n{result.stderr}\n" + "\n".join(tails)
            )
        return result

    def processes(self) -> list[psutil.Process]:
        """Every process (but this one) that names the data dir in its command line or environment."""
        found = []
        for process in psutil.process_iter():
            if process.pid == os.getpid():
                continue
            try:
                texts = [*process.cmdline(), *process.environ().values()]
            except psutil.Error:
                continue
            if any(str(self.data_dir) in text for text in texts):
                found.append(process)
        return found

    def status(self) -> dict[str, Any]:
        """``mlopshub status --json``."""
        return json.loads(self.cli("status", "--json", check=False).stdout)

    def up(self) -> Platform:
        # Each part has MLOPSHUB_START_TIMEOUT (300 s) on a busy machine; the parts come up one after the other.
        self.cli("up", timeout=1200)
        return self

    def down(self) -> None:
        """Stop the platform and remove its data, keeping only ``logs/`` (to read after a failure)."""
        self.cli("down", check=False)
        for entry in self.data_dir.iterdir() if self.data_dir.is_dir() else ():
            if entry.name == "logs":
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    # --- hub REST API -------------------------------------------------------

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"token {token or self.admin_token}"}
        return requests.request(method, f"{self.url}/hub/api/{path.lstrip('/')}", headers=headers, timeout=60, **kwargs)

    def sign_up(self, name: str, password: str) -> requests.Response:
        session = requests.Session()
        session.get(f"{self.url}/hub/signup", timeout=30)
        return session.post(
            f"{self.url}/hub/signup",
            data={
                "username": name,
                "signup_password": password,
                "signup_password_confirmation": password,
                "_xsrf": session.cookies.get("_xsrf", ""),
            },
            timeout=30,
        )

    def login(self, name: str, password: str) -> requests.Session:
        session = requests.Session()
        session.get(f"{self.url}/hub/login", timeout=30)
        response = session.post(
            f"{self.url}/hub/login",
            data={"username": name, "password": password, "_xsrf": session.cookies.get("_xsrf", "")},
            timeout=30,
            allow_redirects=False,
        )
        assert response.status_code == 302, f"login of {name} failed: {response.status_code}"
        return session

    def admin_session(self) -> requests.Session:
        """The first admin signs up (authorized at once) and signs in."""
        if not hasattr(self, "_admin_session"):
            password = "admin-" + secrets.token_hex(8)
            self.sign_up("admin", password)
            self._admin_session = self.login("admin", password)
        return self._admin_session

    def add_user(self, name: str, team: str | None, password: str | None = None) -> str:
        """Sign ``name`` up, authorize them as the admin would, put them in ``team``; return their password."""
        password = password or "pw-" + secrets.token_hex(8)
        # Suites share one platform: a second sign-up of a name would be refused, and the test would go on with a
        # password that is not the user's (a sign-in "fails" minutes later). Name the clash here instead.
        existing = self.api("GET", f"users/{name}")
        assert existing.status_code == 404, f"user {name!r} already exists on this platform: use another name"
        self.sign_up(name, password)
        admin = self.admin_session()
        response = admin.get(f"{self.url}/hub/authorize/{name}", timeout=30)
        assert response.status_code == 200, response.text[:500]  # authorized: a hub user, ready for a group
        if team:
            response = self.api("POST", f"groups/{team}/users", json={"users": [name]})
            assert response.status_code == 200, response.text
        return password

    def token_for(self, name: str, scopes: list[str] | None = None) -> str:
        body: dict[str, Any] = {"note": "test", "expires_in": 3600}
        if scopes is not None:
            body["scopes"] = scopes
        response = self.api("POST", f"users/{name}/tokens", json=body)
        assert response.status_code == 201, response.text
        return response.json()["token"]

    def spawn(self, name: str, profile: str | None, **options: str) -> requests.Response:
        body = {"profile": profile, **options} if profile else {}
        return self.api("POST", f"users/{name}/server", json=body)

    def wait_ready(self, name: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"users/{name}").json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                return server
            if not server or (not server.get("pending") and not server.get("ready")):
                raise AssertionError(f"{name}'s server is not starting: {model}")
            time.sleep(1)
        raise AssertionError(f"{name}'s server not ready in {timeout}s")

    def start(self, name: str, profile: str, **options: str) -> dict[str, Any]:
        response = self.spawn(name, profile, **options)
        assert response.status_code in (201, 202), response.text
        return self.wait_ready(name)

    def stop(self, name: str) -> None:
        self.api("DELETE", f"users/{name}/server")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.api("GET", f"users/{name}").json().get("servers"):
            time.sleep(0.5)

    # --- inside a workspace --------------------------------------------------

    def workspace(self, name: str, path: str, token: str, method: str = "GET", **kwargs: Any) -> requests.Response:
        return requests.request(
            method,
            f"{self.url}/user/{name}/{path.lstrip('/')}",
            headers={"Authorization": f"token {token}"},
            timeout=60,
            **kwargs,
        )

    def execute(self, name: str, token: str, code: str, kernel: str = "python3", timeout: float = 120) -> str:
        """Run ``code`` in a new kernel of ``name``'s workspace; return its stdout (errors raise)."""
        response = self.workspace(name, "api/kernels", token, "POST", json={"name": kernel})
        assert response.status_code == 201, response.text
        kernel_id = response.json()["id"]
        try:
            return self.run_in_kernel(name, token, kernel_id, code, timeout)
        finally:
            self.workspace(name, f"api/kernels/{kernel_id}", token, "DELETE")

    def open_notebook(self, name: str, token: str, path: str, notebook: dict, kernel: str) -> str:
        """Save ``notebook`` at ``path`` and start a kernel for it as JupyterLab does; return the kernel id."""
        saved = self.workspace(
            name, f"api/contents/{path}", token, "PUT", json={"type": "notebook", "format": "json", "content": notebook}
        )
        assert saved.status_code in (200, 201), saved.text
        session = self.workspace(
            name,
            "api/sessions",
            token,
            "POST",
            json={"path": path, "type": "notebook", "name": path.rsplit("/", 1)[-1], "kernel": {"name": kernel}},
        )
        assert session.status_code == 201, session.text
        return session.json()["kernel"]["id"]

    def run_in_kernel(self, name: str, token: str, kernel_id: str, code: str, timeout: float = 120) -> str:
        """Run ``code`` in a running kernel; return its stdout (an error in the cell raises)."""
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{self.port}/user/{name}/api/kernels/{kernel_id}/channels",
            header=[f"Authorization: token {token}"],
            timeout=timeout,
        )
        try:
            msg_id = uuid.uuid4().hex
            ws.send(
                json.dumps(
                    {
                        "header": {
                            "msg_id": msg_id,
                            "username": name,
                            "session": uuid.uuid4().hex,
                            "msg_type": "execute_request",
                            "version": "5.3",
                            "date": "",
                        },
                        "parent_header": {},
                        "metadata": {},
                        "channel": "shell",
                        "content": {
                            "code": code,
                            "silent": False,
                            "store_history": False,
                            "user_expressions": {},
                            "allow_stdin": False,
                            "stop_on_error": True,
                        },
                    }
                )
            )
            output, error = [], None
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                message = json.loads(ws.recv())
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = message["msg_type"]
                if kind == "stream":
                    output.append(message["content"]["text"])
                elif kind == "error":
                    error = "\n".join(message["content"]["traceback"])
                elif kind == "status" and message["content"]["execution_state"] == "idle":
                    break
            if error:
                raise AssertionError(f"cell failed:\n{error}\n{''.join(output)}")
            return "".join(output)
        finally:
            ws.close()
