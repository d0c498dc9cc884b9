"""A Kubernetes API server stand-in on loopback, for the serving objects the pipeline applies.

It answers as the API server does the three requests the pipeline sends:
server-side apply (PATCH with ``application/apply-patch+yaml``: the object is
stored, its ``metadata.generation`` goes up by one, and it is answered back),
delete (200, or 404 with a Status for an object it does not hold), and a watch
on a collection narrowed to one name (``GET ...?watch=true&fieldSelector=
metadata.name=<name>``: a chunked response of JSON lines ``{"type": ...,
"object": ...}``). Every request is recorded.

A watch reports the object first as KServe does right after a change, still
Ready for the previous generation, then Ready for the current one; a name in
:attr:`ApiPeer.stuck` gets the conditions given there instead, and never gets
Ready. A name in :attr:`ApiPeer.refuse` is refused on apply with a 422 Status
carrying the message given.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml


class ApiPeer:
    """The stand-in itself: start with ``with ApiPeer() as peer``; ``peer.url`` is its address."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.objects: dict[str, dict[str, Any]] = {}
        self.stuck: dict[str, list[dict[str, Any]]] = {}
        self.refuse: dict[str, str] = {}
        self.lock = threading.Lock()
        peer = self

        class Handler(_Handler):
            owner = peer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> ApiPeer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def calls(self) -> list[tuple[str, str]]:
        """(method, path) of each request so far, in order."""
        with self.lock:
            return [(r["method"], r["path"]) for r in self.requests]

    def kubeconfig(self, folder: Path) -> Path:
        """A kubeconfig file pointing at this peer."""
        return kubeconfig(folder, self.url)

    def events(self, path: str, name: str) -> list[dict[str, Any]]:
        """What a watch on ``path`` narrowed to ``name`` reports (see the module docstring)."""
        with self.lock:
            current = self.objects.get(f"{path}/{name}")
        if current is None:
            return []
        generation = current["metadata"]["generation"]
        ready = [{"type": "Ready", "status": "True"}]
        stale = {**current, "status": {"observedGeneration": generation - 1, "conditions": ready}}
        conditions = self.stuck.get(name, ready)
        now = {**current, "status": {"observedGeneration": generation, "conditions": conditions}}
        return [{"type": "ADDED", "object": stale}, {"type": "MODIFIED", "object": now}]


class _Handler(BaseHTTPRequestHandler):
    owner: ApiPeer
    protocol_version = "HTTP/1.1"

    def _record(self, body: Any = None) -> tuple[str, dict[str, list[str]]]:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        with self.owner.lock:
            self.owner.requests.append(
                {
                    "method": self.command,
                    "path": url.path,
                    "query": query,
                    "type": self.headers.get("Content-Type"),
                    "body": body,
                }
            )
        return url.path, query

    def _answer(self, code: int, document: Any) -> None:
        data = json.dumps(document).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        return yaml.safe_load(data) if data else None  # apply-patch+yaml: JSON is YAML

    def do_PATCH(self) -> None:  # noqa: N802 - http.server's name
        body = self._body()
        path, _ = self._record(body)
        name = path.rsplit("/", 1)[-1]
        if name in self.owner.refuse:
            message = self.owner.refuse[name]
            self._answer(422, {"kind": "Status", "status": "Failure", "message": message, "code": 422})
            return
        with self.owner.lock:
            generation = self.owner.objects.get(path, {}).get("metadata", {}).get("generation", 0) + 1
            stored = {**body, "metadata": {**body["metadata"], "generation": generation, "resourceVersion": "1"}}
            self.owner.objects[path] = stored
        self._answer(200, stored)

    def do_DELETE(self) -> None:  # noqa: N802
        self._body()
        path, _ = self._record()
        with self.owner.lock:
            gone = self.owner.objects.pop(path, None)
        if gone is None:
            self._answer(404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
        else:
            self._answer(200, {"kind": "Status", "status": "Success"})

    def do_GET(self) -> None:  # noqa: N802
        path, query = self._record()
        if query.get("watch", [""])[0].lower() != "true":
            self._answer(405, {"kind": "Status", "status": "Failure", "message": "only watches here", "code": 405})
            return
        name = query.get("fieldSelector", [""])[0].removeprefix("metadata.name=")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in self.owner.events(path, name):
            line = json.dumps(event).encode() + b"\n"
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")  # the watch ends, as at its timeoutSeconds

    def log_message(self, *args: object) -> None:
        pass


def kubeconfig(folder: Path, server: str) -> Path:
    """A kubeconfig file naming the API server at ``server`` (a token that only the peer accepts)."""
    path = folder / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path
