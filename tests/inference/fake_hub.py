"""A local stand-in for the Hugging Face Hub, enough for huggingface_hub's downloads.

It serves folders as model repos at one commit each (`HF_ENDPOINT=<url>`): repo info,
the recursive tree listing, and `resolve` (HEAD for metadata, GET for the bytes). Every
file GET is recorded, so a test can say exactly which files a command downloaded, and so is
each request's Authorization header (whether a token was sent).
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class FakeHub:
    def __init__(self, repos: dict[str, Path], commit: str):
        self.repos = {repo: Path(folder) for repo, folder in repos.items()}
        self.commit = commit
        self.downloads: list[tuple[str, str]] = []  # (repo, path) of every file GET
        self.requests: list[str] = []
        self.authorizations: list[tuple[str, str | None]] = []  # (request path, Authorization header)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def files(self, repo: str) -> list[str]:
        root = self.repos[repo]
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    def downloaded(self, repo: str) -> set[str]:
        with self._lock:
            return {path for name, path in self.downloads if name == repo}

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet test output
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                path = unquote(urlparse(self.path).path)
                with hub._lock:
                    hub.requests.append(f"{self.command} {path}")
                    hub.authorizations.append((path, self.headers.get("Authorization")))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 4:
                    repo, rest = "/".join(parts[2:4]), parts[4:]
                    if repo not in hub.repos:
                        return self._json(404, {"error": "Repository not found"}, body)
                    if rest[:1] == ["tree"]:
                        return self._json(200, [self._entry(repo, f) for f in hub.files(repo)], body)
                    # /api/models/ORG/NAME[/revision/REV]: repo info
                    return self._json(200, {
                        "id": repo, "modelId": repo, "sha": hub.commit, "private": False, "gated": False,
                        "siblings": [{"rfilename": f} for f in hub.files(repo)],
                    }, body)
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
                    file = hub.repos.get(repo, Path("/nonexistent")) / filename
                    if repo not in hub.repos or not file.is_file():
                        self.send_response(404)
                        self.send_header("X-Error-Code", "EntryNotFound")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    data = file.read_bytes()
                    if body:
                        with hub._lock:
                            hub.downloads.append((repo, filename))
                    self.send_response(200)
                    self.send_header("X-Repo-Commit", hub.commit)
                    self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if body:
                        self.wfile.write(data)
                    return
                self._json(404, {"error": f"not served by the fake hub: {path}"}, body)

            def _entry(self, repo: str, name: str) -> dict:
                data = (hub.repos[repo] / name).read_bytes()
                return {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}

            def _json(self, status: int, payload, body: bool) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 404:
                    self.send_header("X-Error-Code", "RepoNotFound")
                self.end_headers()
                if body:
                    self.wfile.write(data)

        return Handler
