"""A local stand-in for the Hugging Face Hub, enough for huggingface_hub's downloads.

It serves folders as model repos (`HF_ENDPOINT=<url>`): repo info, the recursive tree
listing, and `resolve` (HEAD for metadata, GET for the bytes). Each repo's default branch
(`main`) is its folder at `commit`; `revisions` adds other revisions of a repo, each its own
folder: a branch or tag name (which may hold '/', as `refs/pr/1` does) at a commit derived
from its name, or a 40-hex commit sha at that commit; an unknown revision is a 404
`RevisionNotFound`, as on the Hub. Every file GET is recorded with the revision it asked for,
so a test can say exactly which files of which revision a command downloaded, and so is each
request's Authorization header (whether a token was sent).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


class FakeHub:
    def __init__(self, repos: dict[str, Path], commit: str, revisions: dict[str, dict[str, Path]] | None = None):
        self.repos = {repo: Path(folder) for repo, folder in repos.items()}
        self.commit = commit
        # repo -> revision -> (folder, commit), the default branch included
        self.revisions: dict[str, dict[str, tuple[Path, str]]] = {
            repo: {"main": (folder, commit)} for repo, folder in self.repos.items()
        }
        for repo, extra in (revisions or {}).items():
            for revision, folder in extra.items():
                self.revisions[repo][revision] = (Path(folder), self.commit_of(repo, revision))
        self.downloads: list[tuple[str, str]] = []  # (repo, path) of every file GET
        self.revision_downloads: list[tuple[str, str, str]] = []  # (repo, revision as asked, path) of every file GET
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

    @staticmethod
    def commit_of(repo: str, revision: str) -> str:
        """The commit a revision of `repo` is at: a commit sha is itself, a branch or tag a sha of its name."""
        if _COMMIT_SHA.fullmatch(revision):
            return revision
        return hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()

    def at(self, repo: str, revision: str) -> tuple[Path, str] | None:
        """(folder, commit) of `repo` at `revision` (a name or the commit it is at), or None."""
        known = self.revisions.get(repo, {})
        if revision in known:
            return known[revision]
        return next((entry for entry in known.values() if entry[1] == revision), None)

    def files(self, repo: str, revision: str = "main") -> list[str]:
        root = self.revisions[repo][revision][0] if revision in self.revisions[repo] else self.repos[repo]
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    def downloaded(self, repo: str) -> set[str]:
        with self._lock:
            return {path for name, path in self.downloads if name == repo}

    def downloaded_at(self, repo: str) -> set[tuple[str, str]]:
        """(revision as asked, path) of every file of `repo` downloaded."""
        with self._lock:
            return {(revision, path) for name, revision, path in self.revision_downloads if name == repo}

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
                raw = urlparse(self.path).path
                path = unquote(raw)
                with hub._lock:
                    hub.requests.append(f"{self.command} {path}")
                    hub.authorizations.append((path, self.headers.get("Authorization")))
                # Split before unquoting: a revision travels quoted whole (refs%2Fpr%2F1).
                parts = [unquote(part) for part in raw.strip("/").split("/")]
                if parts[:2] == ["api", "models"] and len(parts) >= 4:
                    repo, rest = "/".join(parts[2:4]), parts[4:]
                    if repo not in hub.repos:
                        return self._json(404, {"error": "Repository not found"}, body)
                    # /api/models/ORG/NAME[/revision/REV] (repo info), /api/models/ORG/NAME/tree/REV[/PATH]
                    revision = rest[1] if len(rest) >= 2 and rest[0] in ("tree", "revision") else "main"
                    found = hub.at(repo, revision)
                    if found is None:
                        return self._json(404, {"error": f"Invalid rev id: {revision}"}, body, code="RevisionNotFound")
                    folder, commit = found
                    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
                    if rest[:1] == ["tree"]:
                        return self._json(200, [self._entry(folder, f) for f in files], body)
                    return self._json(200, {
                        "id": repo, "modelId": repo, "sha": commit, "private": False, "gated": False,
                        "siblings": [{"rfilename": f} for f in files],
                    }, body)
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                    found = hub.at(repo, revision) if repo in hub.repos else None
                    if found is None or not (found[0] / filename).is_file():
                        self.send_response(404)
                        self.send_header("X-Error-Code", "EntryNotFound" if found else "RevisionNotFound")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    (folder, commit) = found
                    data = (folder / filename).read_bytes()
                    if body:
                        with hub._lock:
                            hub.downloads.append((repo, filename))
                            hub.revision_downloads.append((repo, revision, filename))
                    self.send_response(200)
                    self.send_header("X-Repo-Commit", commit)
                    self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if body:
                        self.wfile.write(data)
                    return
                self._json(404, {"error": f"not served by the fake hub: {path}"}, body)

            def _entry(self, folder: Path, name: str) -> dict:
                data = (folder / name).read_bytes()
                return {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}

            def _json(self, status: int, payload, body: bool, code: str = "RepoNotFound") -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 404:
                    self.send_header("X-Error-Code", code)
                self.end_headers()
                if body:
                    self.wfile.write(data)

        return Handler
