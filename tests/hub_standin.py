"""A real local HTTP server that answers like the Hugging Face Hub: downloads of model repos, and uploads.

Downloads: it serves a folder under a made-up repo id and commit sha, with the calls huggingface_hub 2.4's
``snapshot_download`` makes:

- ``GET /api/models/{repo}/tree/{rev}?recursive=...``: the file listing (one page, no ``Link`` header);
- ``HEAD`` then ``GET /{repo}/resolve/{rev}/{path}``: each file's metadata, then its bytes.

``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}`` (model info, which resolves a branch name)
are there too.

Uploads, as ``HfApi.create_repo`` and ``create_commit`` / ``upload_folder`` make them over plain HTTP (Git LFS;
huggingface_hub uses Xet instead unless ``HF_HUB_DISABLE_XET=1``, and this server, like a hub without Xet
storage, has no ``xet-write-token`` route):

- ``POST /api/repos/create``: a new repo whose first commit holds the Hub's default ``.gitattributes``;
  409 with the repo's ``url`` when it exists, 403 in a namespace the token may not write to;
- ``POST /api/validate-yaml``: the README's front matter must be YAML whose ``model-index`` huggingface_hub parses;
- ``POST /api/models/{repo}/preupload/{rev}``: each file's upload mode (``lfs`` for the patterns in
  ``.gitattributes`` and for files of 10 MB or more, else ``regular``) and the oid it has at ``rev``;
- ``POST /{repo}.git/info/lfs/objects/batch``: where to ``PUT`` each LFS object the server lacks (a one-time
  URL, as the Hub's presigned ones: the client sends no token there), then the ``PUT`` itself, checked
  against the object's sha256 and size;
- ``POST /api/models/{repo}/commit/{rev}``: the NDJSON commit (regular files in base64, LFS files by oid,
  deletions), which becomes the new head of ``main``.

Like the Hub, it tells errors apart by the ``X-Error-Code`` / ``X-Error-Message`` headers, which huggingface_hub
maps to its exceptions, and sends no Xet headers, so the client downloads over plain HTTP. Writes need
``Authorization: Bearer <token>``; a wrong token gets the Hub's 401 "Invalid credentials in Authorization
header". Every request is logged (method, path, and whether it carried the token; never the token itself).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tests.local_servers import BackgroundHTTPServer, send_json

TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<kind>tree|revision)/(?P<rev>[^/]+)/?$")
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
MODEL_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/?$")
PREUPLOAD = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>[^/]+)$")
COMMIT = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>[^/]+)$")
LFS_BATCH = re.compile(r"^/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$")
LFS_UPLOAD = re.compile(r"^/lfs-upload/(?P<ticket>[0-9a-f]+)/(?P<oid>[0-9a-f]{64})$")
BAD_TOKEN = "Invalid credentials in Authorization header"
# What the Hub writes as the first commit of a new model repo (abridged to the patterns that matter here).
DEFAULT_GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in (
    "*.bin", "*.safetensors", "*.onnx", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.ot", "*.model", "*.zip",
    "*.tar.gz", "*tfevents*"))
LFS_MIN_SIZE = 10 * 1024 * 1024  # the Hub sends files of 10 MB or more to LFS whatever their name


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class ServedFile:
    path: str  # '/'-separated, relative to the repo root
    source: Path | None  # a file on disk (a served folder), or None with ``content`` (an upload)
    size: int
    oid: str  # the git blob id of what git stores: the file itself, or its LFS pointer
    lfs_sha256: str | None  # set for files the repo's .gitattributes sends to LFS
    lfs_pointer_size: int | None
    content: bytes | None = None

    @property
    def etag(self) -> str:
        # The Hub's ETag is the git blob id for a regular file and the sha256 of the content for an LFS
        # file: huggingface_hub names its cached blobs after it.
        return self.lfs_sha256 or self.oid

    def blocks(self):
        if self.content is not None:
            yield self.content
            return
        with self.source.open("rb") as handle:
            while block := handle.read(1 << 20):
                yield block


def _lfs_patterns_in(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines() if "filter=lfs" in line]


def _lfs_patterns(folder: Path) -> list[str]:
    attributes = folder / ".gitattributes"
    return _lfs_patterns_in(attributes.read_text()) if attributes.is_file() else []


def _served(path: str, data: bytes, lfs: bool, source: Path | None = None) -> ServedFile:
    content = None if source is not None else data
    if lfs:
        sha256 = hashlib.sha256(data).hexdigest()
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n"
        return ServedFile(path, source, len(data), _git_blob_sha1(pointer.encode()), sha256, len(pointer), content)
    return ServedFile(path, source, len(data), _git_blob_sha1(data), None, None, content)


def _describe(folder: Path) -> dict[str, ServedFile]:
    lfs_patterns = _lfs_patterns(folder)
    files = {}
    for source in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        path = source.relative_to(folder).as_posix()
        lfs = any(fnmatch.fnmatch(path, pattern) for pattern in lfs_patterns)
        files[path] = _served(path, source.read_bytes(), lfs, source)
    return files


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    authorized: bool


@dataclass
class HostedRepo:
    """A model repo: its commits (sha -> files) and the head of ``main``."""

    repo_id: str
    private: bool
    commits: dict[str, dict[str, ServedFile]]
    head: str
    answered_commit: str | None = None  # sent in X-Repo-Commit instead of the commit asked for (a bad mirror)
    summaries: list[str] = field(default_factory=list)  # the commit messages, oldest first

    def files_at(self, revision: str) -> dict[str, ServedFile] | None:
        return self.commits.get(self.head if revision == "main" else revision)


class HubStandIn:
    """``folder`` served as commit ``commit`` (also reachable as branch ``main``) of model repo ``repo_id``; with no
    folder, no repo until one is created through the API.

    ``token``: the one token the server accepts. When set with a folder, that repo is private: requests without
    ``Authorization: Bearer <token>`` get the Hub's 401 RepoNotFound. Writes always need it.
    ``answered_commit``: the commit sent in ``X-Repo-Commit`` (a misconfigured mirror that serves another commit
    under the requested one); by default the served commit. ``writable_namespaces``: where the token may create
    repos (its user first, then its organisations); anywhere else gets the Hub's 403.
    """

    def __init__(self, folder: Path | None = None, repo_id: str | None = None, commit: str | None = None,
                 token: str | None = None, answered_commit: str | None = None,
                 writable_namespaces: tuple[str, ...] = ()) -> None:
        self.repo_id = repo_id
        self.commit = commit
        self.token = token
        self.answered_commit = answered_commit or commit
        self.writable_namespaces = writable_namespaces
        self.files = _describe(folder) if folder is not None else {}
        self.repos: dict[str, HostedRepo] = {}
        if folder is not None:
            self.repos[repo_id] = HostedRepo(repo_id, token is not None, {commit: self.files}, commit,
                                             answered_commit)
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content, as PUT by clients
        self.requests: list[LoggedRequest] = []
        self._tickets: set[str] = set()
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

    def head_files(self, repo_id: str) -> dict[str, bytes]:
        """Every file of ``repo_id`` at the head of ``main``, as bytes."""
        repo = self.repos[repo_id]
        return {path: b"".join(served.blocks()) for path, served in repo.commits[repo.head].items()}

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

            def do_POST(self) -> None:  # noqa: N802
                self._write("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._write("PUT")

            def _authorized(self) -> bool:
                return hub.token is not None and self.headers.get("Authorization") == f"Bearer {hub.token}"

            def _log(self) -> bool:
                authorized = self._authorized()
                with hub._lock:
                    hub.requests.append(LoggedRequest(self.command, self.path, authorized))
                return authorized

            def _answer(self, send_body: bool) -> None:
                path = urlsplit(self.path).path
                authorized = self._log()
                match = TREE.match(path) or RESOLVE.match(path) or MODEL_INFO.match(path)
                repo = hub.repos.get(match["repo"]) if match else None
                revision = unquote(match["rev"]) if match and "rev" in match.groupdict() else "main"
                if match is None:
                    self._error(404, None, f"Cannot {self.command} {path}", send_body)
                elif repo is None or (repo.private and not authorized):
                    # What the Hub answers, when not authenticated, for a repo that is missing or private.
                    self._error(401, "RepoNotFound", "Repository not found", send_body)
                elif (files := repo.files_at(revision)) is None:
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", send_body)
                elif "path" not in match.groupdict():
                    sha = repo.head if revision == "main" else revision
                    body = _tree(files) if match.groupdict().get("kind") == "tree" else _model_info(repo, sha, files)
                    self._json(body, send_body)
                elif (served := files.get(unquote(match["path"]))) is None:
                    self._error(404, "EntryNotFound", f"Entry not found: {match['path']}", send_body)
                else:
                    self._file(served, repo.answered_commit or (repo.head if revision == "main" else revision),
                               send_body)

            def _file(self, served: ServedFile, commit: str, send_body: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(served.size))
                self.send_header("ETag", f'"{served.etag}"')
                self.send_header("X-Repo-Commit", commit)
                if served.lfs_sha256:
                    self.send_header("X-Linked-Etag", f'"{served.lfs_sha256}"')
                    self.send_header("X-Linked-Size", str(served.size))
                self.end_headers()
                if send_body:
                    for block in served.blocks():
                        self.wfile.write(block)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while (size := int(self.rfile.readline().split(b";")[0].strip(), 16)) > 0:
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()  # the CRLF after each chunk
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _write(self, method: str) -> None:
                path = urlsplit(self.path).path
                authorized = self._log()
                body = self._body()
                if method == "PUT" and (match := LFS_UPLOAD.match(path)):
                    self._lfs_put(match["ticket"], match["oid"], body)
                elif method != "POST":
                    self._error(405, None, f"Cannot {method} {path}", True)
                elif path == "/api/validate-yaml":
                    self._validate_yaml(json.loads(body))
                elif hub.token is None or not authorized:
                    self._error(401, None, BAD_TOKEN, True)
                elif path == "/api/repos/create":
                    self._create(json.loads(body))
                elif match := PREUPLOAD.match(path) or COMMIT.match(path) or LFS_BATCH.match(path):
                    self._repo_write(match, path, body)
                else:
                    self._error(404, None, f"Cannot POST {path}", True)

            def _create(self, request: dict) -> None:
                namespace = request.get("organization") or (hub.writable_namespaces or ("",))[0]
                repo_id = f"{namespace}/{request['name']}"
                if request.get("type", "model") != "model":
                    self._error(400, None, "This stand-in hosts model repos only", True)
                elif namespace not in hub.writable_namespaces:
                    self._error(403, None, f'You don\'t have the rights to create a model under the namespace "{namespace}"', True)
                elif repo_id in hub.repos:
                    self._json({"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"}, True, 409,
                               {"X-Error-Message": "You already created this model repo"})
                else:
                    gitattributes = DEFAULT_GITATTRIBUTES.encode()
                    first = hashlib.sha1(f"{repo_id}\0initial commit".encode()).hexdigest()
                    private = request.get("visibility") == "private" or bool(request.get("private"))
                    with hub._lock:
                        hub.repos[repo_id] = HostedRepo(repo_id, private, {
                            first: {".gitattributes": _served(".gitattributes", gitattributes, lfs=False)}}, first,
                            summaries=["initial commit"])
                    self._json({"url": f"{hub.url}/{repo_id}", "name": repo_id, "id": first[:24]}, True)

            def _repo_write(self, match: re.Match, path: str, body: bytes) -> None:
                repo = hub.repos.get(match["repo"])
                if repo is None:
                    self._error(404, "RepoNotFound", "Repository not found", True)
                elif repo.repo_id.split("/")[0] not in hub.writable_namespaces:
                    self._error(403, None, f"You don't have the rights to write to {repo.repo_id}", True)
                elif "rev" in match.groupdict() and unquote(match["rev"]) != "main":
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(match['rev'])}", True)
                elif PREUPLOAD.match(path):
                    self._preupload(repo, json.loads(body))
                elif COMMIT.match(path):
                    self._commit(repo, body)
                else:
                    self._lfs_batch(json.loads(body))

            def _preupload(self, repo: HostedRepo, request: dict) -> None:
                files = repo.commits[repo.head]
                patterns = _lfs_patterns_in(b"".join(files[".gitattributes"].blocks()).decode()) \
                    if ".gitattributes" in files else []
                answers = []
                for entry in request["files"]:
                    lfs = entry["size"] >= LFS_MIN_SIZE or any(fnmatch.fnmatch(entry["path"], p) for p in patterns)
                    current = files.get(entry["path"])
                    # The oid huggingface_hub compares with its own: the sha256 for LFS, the git blob id otherwise.
                    oid = (current.lfs_sha256 or current.oid) if current is not None else None
                    answers.append({"path": entry["path"], "uploadMode": "lfs" if lfs else "regular",
                                    "shouldIgnore": False, "oid": oid})
                self._json({"files": answers, "commitOid": repo.head}, True)

            def _lfs_batch(self, request: dict) -> None:
                if request.get("operation") != "upload" or "basic" not in request.get("transfers", ["basic"]):
                    self._error(400, None, "Only basic LFS uploads are supported", True)
                    return
                objects = []
                for item in request["objects"]:
                    answer = {"oid": item["oid"], "size": item["size"], "authenticated": True}
                    if item["oid"] not in hub.lfs_objects:
                        ticket = secrets.token_hex(16)
                        with hub._lock:
                            hub._tickets.add(ticket)
                        answer["actions"] = {"upload": {"href": f"{hub.url}/lfs-upload/{ticket}/{item['oid']}"}}
                    objects.append(answer)
                self._json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, True,
                           headers={"Content-Type": "application/vnd.git-lfs+json"})

            def _lfs_put(self, ticket: str, oid: str, body: bytes) -> None:
                with hub._lock:
                    known = ticket in hub._tickets
                    hub._tickets.discard(ticket)
                if not known:
                    self._error(403, None, "Unknown or used upload URL", True)
                elif hashlib.sha256(body).hexdigest() != oid:
                    self._error(400, None, f"Content does not match oid {oid}", True)
                else:
                    with hub._lock:
                        hub.lfs_objects[oid] = body
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def _commit(self, repo: HostedRepo, body: bytes) -> None:
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                if not lines or lines[0].get("key") != "header":
                    self._error(400, None, "The commit must start with its header", True)
                    return
                files = dict(repo.commits[repo.head])
                for line in lines[1:]:
                    value = line["value"]
                    if line["key"] == "file":
                        data = base64.b64decode(value["content"])
                        files[value["path"]] = _served(value["path"], data, lfs=False)
                    elif line["key"] == "lfsFile":
                        data = hub.lfs_objects.get(value["oid"])
                        if data is None or len(data) != value["size"]:
                            self._error(422, None, f"LFS object {value['oid']} was not uploaded", True)
                            return
                        files[value["path"]] = _served(value["path"], data, lfs=True)
                    elif line["key"] == "deletedFile":
                        if files.pop(value["path"], None) is None:
                            self._error(404, "EntryNotFound", "A file with this name doesn't exist", True)
                            return
                    elif line["key"] == "deletedFolder":
                        files = {p: f for p, f in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
                    else:
                        self._error(400, None, f"Unknown commit operation {line['key']!r}", True)
                        return
                sha = hashlib.sha1(repo.head.encode() + body).hexdigest()
                with hub._lock:
                    repo.commits[sha] = files
                    repo.head = sha
                    repo.summaries.append(lines[0]["value"].get("summary", ""))
                self._json({"success": True, "commitOid": sha, "commitUrl": f"{hub.url}/{repo.repo_id}/commit/{sha}",
                            "commitMessage": lines[0]["value"].get("summary", "")}, True)

            def _validate_yaml(self, request: dict) -> None:
                from huggingface_hub import ModelCard
                from huggingface_hub.repocard_data import model_index_to_eval_results

                try:
                    card = ModelCard(request["content"], ignore_metadata_errors=False)
                    model_index = card.data.to_dict().get("model-index")
                    if model_index:
                        model_index_to_eval_results(model_index)
                except Exception as error:  # noqa: BLE001 - any parse error is the client's, as the Hub says
                    self._json({"errors": [{"message": str(error)}], "warnings": []}, True, 400)
                    return
                self._json({"errors": [], "warnings": []}, True)

            def _json(self, body: object, send_body: bool, status: int = 200,
                      headers: dict[str, str] | None = None) -> None:
                send_json(self, status, json.dumps(body).encode(), headers, send_body)

            def _error(self, status: int, code: str | None, message: str, send_body: bool) -> None:
                headers = {"X-Error-Message": message} | ({"X-Error-Code": code} if code else {})
                self._json({"error": message}, send_body, status, headers)

        return Handler


def _tree(files: dict[str, ServedFile]) -> list[dict]:
    folders = sorted({parent.as_posix() for path in files for parent in Path(path).parents} - {"."})
    entries: list[dict] = [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in folders]
    for served in files.values():
        entry: dict = {"type": "file", "oid": served.oid, "size": served.size, "path": served.path}
        if served.lfs_sha256:
            entry["lfs"] = {"oid": served.lfs_sha256, "size": served.size, "pointerSize": served.lfs_pointer_size}
        entries.append(entry)
    return entries


def _model_info(repo: HostedRepo, sha: str, files: dict[str, ServedFile]) -> dict:
    return {"_id": sha[:24], "id": repo.repo_id, "modelId": repo.repo_id, "sha": sha, "private": repo.private,
            "siblings": [{"rfilename": path} for path in files]}
