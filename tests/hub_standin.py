"""A real local HTTP server that answers like the Hugging Face Hub for one model repo at one commit.

It serves a folder under a made-up repo id and commit sha, and only the calls huggingface_hub 2.4's
``snapshot_download`` makes for a commit-sha revision:

- ``GET /api/models/{repo}/tree/{rev}?recursive=...``: the file listing (one page, no ``Link`` header);
- ``HEAD`` then ``GET /{repo}/resolve/{rev}/{path}``: each file's metadata, then its bytes.

``GET /api/models/{repo}/revision/{rev}`` (model info, which resolves a branch name) is there too. Like the
Hub, it tells errors apart by the ``X-Error-Code`` header, which huggingface_hub maps to its exceptions, and
sends no Xet headers, so the client downloads over plain HTTP. Every request is logged (method, path, and
whether it carried a token; never the token itself).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tests.local_servers import BackgroundHTTPServer, send_json

TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<kind>tree|revision)/(?P<rev>[^/]+)/?$")
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class ServedFile:
    path: str  # '/'-separated, relative to the repo root
    source: Path
    size: int
    oid: str  # the git blob id of what git stores: the file itself, or its LFS pointer
    lfs_sha256: str | None  # set for files the repo's .gitattributes sends to LFS
    lfs_pointer_size: int | None

    @property
    def etag(self) -> str:
        # The Hub's ETag is the git blob id for a regular file and the sha256 of the content for an LFS
        # file: huggingface_hub names its cached blobs after it.
        return self.lfs_sha256 or self.oid


def _lfs_patterns(folder: Path) -> list[str]:
    attributes = folder / ".gitattributes"
    if not attributes.is_file():
        return []
    return [line.split()[0] for line in attributes.read_text().splitlines() if "filter=lfs" in line]


def _describe(folder: Path) -> dict[str, ServedFile]:
    lfs_patterns = _lfs_patterns(folder)
    files = {}
    for source in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        path = source.relative_to(folder).as_posix()
        data = source.read_bytes()
        if any(fnmatch.fnmatch(path, pattern) for pattern in lfs_patterns):
            sha256 = hashlib.sha256(data).hexdigest()
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n"
            files[path] = ServedFile(path, source, len(data), _git_blob_sha1(pointer.encode()), sha256, len(pointer))
        else:
            files[path] = ServedFile(path, source, len(data), _git_blob_sha1(data), None, None)
    return files


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    authorized: bool


class HubStandIn:
    """``folder`` served as commit ``commit`` (also reachable as branch ``main``) of model repo ``repo_id``.

    ``token``: when set, the repo is private: requests without ``Authorization: Bearer <token>`` get the
    Hub's 401 RepoNotFound. ``answered_commit``: the commit sent in ``X-Repo-Commit`` (a misconfigured mirror
    that serves another commit under the requested one); by default the served commit.
    """

    def __init__(self, folder: Path, repo_id: str, commit: str, token: str | None = None,
                 answered_commit: str | None = None) -> None:
        self.repo_id = repo_id
        self.commit = commit
        self.token = token
        self.answered_commit = answered_commit or commit
        self.files = _describe(folder)
        self.requests: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._http = BackgroundHTTPServer(self._handler())

    @property
    def url(self) -> str:
        return self._http.url

    def __enter__(self) -> HubStandIn:
        self._http.start()
        return self

    def __exit__(self, *exc) -> None:
        self._http.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(send_body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(send_body=True)

            def _answer(self, send_body: bool) -> None:
                path = urlsplit(self.path).path
                authorized = hub.token is not None and self.headers.get("Authorization") == f"Bearer {hub.token}"
                with hub._lock:
                    hub.requests.append(LoggedRequest(self.command, self.path, authorized))
                match = TREE.match(path) or RESOLVE.match(path)
                if match is None:
                    self._error(404, None, f"Cannot {self.command} {path}", send_body)
                elif match["repo"] != hub.repo_id or (hub.token is not None and not authorized):
                    # What the Hub answers, when not authenticated, for a repo that is missing or private.
                    self._error(401, "RepoNotFound", "Repository not found", send_body)
                elif unquote(match["rev"]) not in (hub.commit, "main"):
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(match['rev'])}", send_body)
                elif "path" not in match.groupdict():
                    self._json(hub._tree() if match["kind"] == "tree" else hub._model_info(), send_body)
                elif (served := hub.files.get(unquote(match["path"]))) is None:
                    self._error(404, "EntryNotFound", f"Entry not found: {match['path']}", send_body)
                else:
                    self._file(served, send_body)

            def _file(self, served: ServedFile, send_body: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(served.size))
                self.send_header("ETag", f'"{served.etag}"')
                self.send_header("X-Repo-Commit", hub.answered_commit)
                if served.lfs_sha256:
                    self.send_header("X-Linked-Etag", f'"{served.lfs_sha256}"')
                    self.send_header("X-Linked-Size", str(served.size))
                self.end_headers()
                if send_body:
                    with served.source.open("rb") as handle:
                        while block := handle.read(1 << 20):
                            self.wfile.write(block)

            def _json(self, body: object, send_body: bool, status: int = 200,
                      headers: dict[str, str] | None = None) -> None:
                send_json(self, status, json.dumps(body).encode(), headers, send_body)

            def _error(self, status: int, code: str | None, message: str, send_body: bool) -> None:
                headers = {"X-Error-Message": message} | ({"X-Error-Code": code} if code else {})
                self._json({"error": message}, send_body, status, headers)

        return Handler

    def _tree(self) -> list[dict]:
        folders = sorted({parent.as_posix() for path in self.files for parent in Path(path).parents} - {"."})
        entries: list[dict] = [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in folders]
        for served in self.files.values():
            entry: dict = {"type": "file", "oid": served.oid, "size": served.size, "path": served.path}
            if served.lfs_sha256:
                entry["lfs"] = {"oid": served.lfs_sha256, "size": served.size, "pointerSize": served.lfs_pointer_size}
            entries.append(entry)
        return entries

    def _model_info(self) -> dict:
        return {"_id": self.commit[:24], "id": self.repo_id, "modelId": self.repo_id, "sha": self.commit,
                "private": self.token is not None, "siblings": [{"rfilename": path} for path in self.files]}
