"""Publish the fine-tuned model to the Hugging Face Hub, where RAG applications fetch models by repo id.

What goes up is the shipped folder as it is, byte for byte: ``models/finetuned`` with its card (``README.md``,
whose YAML front matter the ``model_card`` stage writes: base model, licence, languages, tags and the golden-test
results as ``model-index``), and optionally the ONNX export (``models/finetuned-onnx``) in the subfolder
``onnx_pooled/``. Not ``onnx/``: sentence-transformers' ONNX backend loads ``onnx/model.onnx`` as a token-level
graph through optimum and pools itself, while ours has pooling and normalisation inside and outputs
``sentence_embedding``; under ``onnx/`` it would break ``SentenceTransformer(repo, backend="onnx")``.

One commit makes the repo a copy of what is published: files the repo holds that the folders lack (an ONNX
export published before, a file the model no longer has) are deleted in the same commit; the Hub keeps them in
the repo's history. ``.gitattributes`` stays.

The token is read from ``HF_TOKEN`` only (the environment, or the git-ignored ``.env`` that ``run_stage`` loads),
never from a flag or huggingface_hub's login file, and it appears in no message. ``HF_ENDPOINT`` is left to
huggingface_hub, which reads it when first imported: this module imports it only inside functions, after ``.env``
is loaded. Every failure the user can fix is one ``UserError`` paragraph.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from stages.lib.common.errors import UserError

TOKEN_VARIABLE = "HF_TOKEN"
ONNX_SUBFOLDER = "onnx_pooled"
CARD = "README.md"
KEPT_REMOTE_FILES = (".gitattributes",)  # the Hub's own, written when the repo was created
DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class Publication:
    """What goes up: each path in the repo and the local file it is."""

    files: dict[str, Path]
    license: str
    base_model: str | None

    @property
    def total_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.files.values())


@dataclass(frozen=True)
class Published:
    repo_url: str
    commit_url: str
    private: bool
    deleted: list[str]  # repo files the commit removed


def forget_empty_endpoint() -> None:
    """An empty ``HF_ENDPOINT=`` line in .env would send every request to a relative URL: treat it as unset. Call
    before huggingface_hub is first imported, which reads it once."""
    if not os.environ.get("HF_ENDPOINT", "").strip():
        os.environ.pop("HF_ENDPOINT", None)


def hub_token() -> str:
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise UserError(
            f"Publishing needs a Hugging Face token with write access, but {TOKEN_VARIABLE} is not set. Create one at "
            f"{_endpoint()}/settings/tokens (type 'Write', or fine-grained with write access to the repo's namespace) "
            f"and put it in the environment or in the git-ignored .env file as {TOKEN_VARIABLE}=... (never in "
            "params.yaml or on the command line), then run again."
        )
    return token


def check_repo_id(repo_id: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise UserError(f"--repo-id {repo_id!r} is not a Hub repo id ({error}). Write it as ORG/NAME, e.g. "
                        "acme-legal/e5-small-securities-law.") from None
    if repo_id.count("/") != 1:
        raise UserError(f"--repo-id {repo_id!r} has no namespace: write it as ORG/NAME (your user name or an "
                        "organisation you may write to, then the model's name), e.g. acme-legal/e5-small-securities-law.")


def publication(model_dir: Path, onnx_dir: Path | None) -> Publication:
    """The files to upload, after checking the folders are the pipeline's finished outputs and the card names a
    licence (a model published without one cannot be reused by anybody)."""
    from huggingface_hub import ModelCard

    how = "run `dvc repro` (its `model_card` stage writes it), or `dvc pull models/finetuned` for a teammate's run"
    if not (model_dir / "modules.json").is_file():
        raise UserError(f"{model_dir} is not a sentence-transformers folder (no modules.json): {how}.")
    card_file = model_dir / CARD
    if not card_file.is_file():
        raise UserError(f"{card_file} is missing: the model would go up without its card. {how[0].upper()}{how[1:]}.")
    try:
        metadata = ModelCard(card_file.read_text(encoding="utf-8")).data
    except Exception as error:  # noqa: BLE001 - front matter that is not YAML (PyYAML's error), or a model-index it cannot read
        raise UserError(f"The metadata at the top of {card_file} cannot be read ({_first_line(error)}): it is not what "
                        "the model_card stage writes. Run `dvc repro model_card` to write it again.") from None
    if not metadata.license:
        raise UserError(
            f"{card_file} states no licence, and a model published without one may not be reused by anybody. Set "
            "`model_card.license` in params.yaml to the licence of the base model (a Hub licence id such as mit or "
            "apache-2.0), run `dvc repro model_card`, then publish again.")
    files = _folder_files(model_dir, "")
    if onnx_dir is not None:
        if not (onnx_dir / "model.onnx").is_file():
            raise UserError(f"--onnx: {onnx_dir} holds no ONNX export (no model.onnx). Set `export.enabled: true` in "
                            "params.yaml and run `dvc repro export`, or publish without --onnx.")
        files |= _folder_files(onnx_dir, ONNX_SUBFOLDER + "/")
    base = metadata.base_model[0] if isinstance(metadata.base_model, list) else metadata.base_model
    return Publication(files, str(metadata.license), base)


def _folder_files(folder: Path, prefix: str) -> dict[str, Path]:
    return {prefix + path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts and ".ipynb_checkpoints" not in path.parts}


def publish(what: Publication, repo_id: str, private: bool, token: str, commit_message: str) -> Published:
    """Create ``repo_id`` if it does not exist and make its ``main`` a copy of ``what`` in one commit."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    _check_online()
    api = HfApi(token=token)  # endpoint: huggingface_hub's own, from HF_ENDPOINT
    with _explained(repo_id, api.endpoint, token):
        # Without --private the Hub's default for the namespace applies (an organisation may make new repos private).
        repo_url = api.create_repo(repo_id, repo_type="model", private=private or None, exist_ok=True)
        info = api.model_info(repo_id)
        if private and not info.private:
            raise UserError(
                f"{repo_id} already exists on {api.endpoint} and is public, so --private would not keep this model "
                f"private. Make the repo private in its settings ({repo_url}/settings), or publish under a new name.")
        remote = set(api.list_repo_files(repo_id))
        stale = sorted(remote - set(what.files) - set(KEPT_REMOTE_FILES))
        operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(local)) for path, local in what.files.items()]
        operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
        commit = api.create_commit(repo_id, operations=operations, commit_message=commit_message)
    return Published(str(repo_url), commit.commit_url, bool(info.private), stale)


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or DEFAULT_ENDPOINT


def _check_online() -> None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise UserError("Publishing needs the network, but HF_HUB_OFFLINE is set (in the environment or .env). Run "
                        "it as `HF_HUB_OFFLINE=0 python -m stages.publish ...`.")


@contextlib.contextmanager
def _explained(repo_id: str, endpoint: str, token: str) -> Iterator[None]:
    """Turn what huggingface_hub raises into one paragraph that says what to do; the token is never in it."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        explanation = _explain(error, repo_id, endpoint.rstrip("/"))
        if explanation is None:
            raise
        raise UserError(explanation.replace(token, "<HF_TOKEN>")) from None


def _mirror_note(endpoint: str) -> str:
    if endpoint == DEFAULT_ENDPOINT:
        return ""
    return (f" HF_ENDPOINT points at {endpoint}: download mirrors (such as hf-mirror.com) accept no uploads; to publish "
            f"to the Hub itself run `HF_ENDPOINT={DEFAULT_ENDPOINT} python -m stages.publish ...` or remove HF_ENDPOINT "
            "from .env.")


def _explain(error: BaseException, repo_id: str, endpoint: str) -> str | None:
    from huggingface_hub.errors import HfHubHTTPError

    namespace = repo_id.split("/")[0]
    http_error = _in_chain(error, HfHubHTTPError)  # an LFS upload's failure comes wrapped in a RuntimeError
    if http_error is not None and http_error.response is not None:
        error = http_error
        status = http_error.response.status_code
        said = _server_message(error)
        explanations: dict[int, Callable[[], str]] = {
            401: lambda: (f"The hub ({endpoint}) refused the token in {TOKEN_VARIABLE} (HTTP 401{said}): it is wrong, "
                          f"expired or revoked. Create a token with write access at {endpoint}/settings/tokens, put it "
                          f"in {TOKEN_VARIABLE} (environment or .env) and run again."),
            403: lambda: (f"The hub ({endpoint}) does not let this token write to {repo_id} (HTTP 403{said}). Either "
                          f"the namespace {namespace!r} is neither your user name nor an organisation in which you may "
                          f"write, or the token is read-only. Check the spelling of --repo-id, or create a token with "
                          f"write access at {endpoint}/settings/tokens."),
            404: lambda: (f"The hub ({endpoint}) does not know {repo_id} or the API it was asked for (HTTP 404{said}). "
                          f"Check --repo-id (ORG/NAME, where ORG is your user name or one of your organisations)."
                          + _mirror_note(endpoint)),
        }
        if status in explanations:
            return explanations[status]()
        if status >= 500:
            return (f"The hub ({endpoint}) failed with HTTP {status}{said} while publishing {repo_id}. Run again later: "
                    "files it already has are not sent again.")
        return f"Publishing {repo_id} to {endpoint} failed with HTTP {status}{said}." + _mirror_note(endpoint)
    if isinstance(error, ValueError) and "Invalid metadata in README.md" in str(error):
        return (f"The hub ({endpoint}) rejected the metadata at the top of the model card ({' '.join(str(error).split())}). "
                "Run `dvc repro model_card` to write the card again, then publish again.")
    if "xet" in type(error).__module__.lower() or "xet" in str(error).lower():
        return (f"The upload through Xet storage to {endpoint} failed ({_first_line(error)}). A server without Xet "
                "storage takes uploads over plain HTTP (Git LFS): run again with HF_HUB_DISABLE_XET=1.")
    if _is_connection_error(error):
        return (f"Could not reach the hub at {endpoint} ({type(error).__name__}: {_first_line(error)}). Check the network "
                "connection and HF_ENDPOINT (environment or .env; unset, it is https://huggingface.co), then run again."
                + _mirror_note(endpoint))
    return None


def _in_chain(error: BaseException, kind: type) -> BaseException | None:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _is_connection_error(error: BaseException) -> bool:
    """A refused connection, unknown host or timeout, from huggingface_hub's HTTP client (whichever it uses)."""
    seen: BaseException | None = error
    while seen is not None:
        names = {cls.__name__ for cls in type(seen).__mro__}
        if names & {"ConnectError", "ConnectTimeout", "TimeoutException", "NetworkError", "ConnectionError",
                    "ConnectionRefusedError"}:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _server_message(error) -> str:
    message = (error.response.headers.get("X-Error-Message") or "").strip()
    return f": {message}" if message else ""


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
