"""Publish the fine-tuned model to the Hugging Face Hub.

    python -m stages.publish --repo-id ORG/NAME              # models/finetuned, public
    python -m stages.publish --repo-id ORG/NAME --private    # a private repo (an existing public one is refused)
    python -m stages.publish --repo-id ORG/NAME --onnx       # also models/finetuned-onnx, as onnx_pooled/

Not a DVC stage: it reads the pipeline's shipped model and changes nothing here. The repo gets the folder as it
is, its model card as README.md (the ``model_card`` stage writes the Hub metadata into it: base model, licence,
languages, tags, the golden-test results as model-index), in one commit that makes the repo a copy of what is
published. The token comes from ``HF_TOKEN`` (the environment or the git-ignored ``.env``; never a flag, never
printed); ``HF_ENDPOINT`` picks another hub. A RAG application then loads the model with
``SentenceTransformer("ORG/NAME")``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from stages.lib.common.errors import run_stage
from stages.lib.serving.hub_publish import (
    ONNX_SUBFOLDER,
    check_repo_id,
    forget_empty_endpoint,
    hub_token,
    publication,
    publish,
)

log = logging.getLogger(__name__)

MODEL_DIR = Path("models/finetuned")
ONNX_DIR = Path("models/finetuned-onnx")


@run_stage("publish")
def main() -> None:
    args = _arguments()
    forget_empty_endpoint()

    # 1. Everything that can be checked here, before any request: the repo id, the folders, the card's licence, the token.
    check_repo_id(args.repo_id)
    what = publication(args.model_dir, args.onnx_dir if args.onnx else None)
    token = hub_token()
    size_mb = what.total_bytes / 1e6
    log.info(f"{args.model_dir}{f' + {args.onnx_dir} (as {ONNX_SUBFOLDER}/)' if args.onnx else ''} -> {args.repo_id}: "
             f"{len(what.files)} files, {size_mb:,.1f} MB; licence {what.license}, base model {what.base_model or 'not stated'}")

    # 2. Create the repo if needed and commit the files (unchanged ones are not sent again).
    message = f"Publish {args.model_dir}" + (f" and {args.onnx_dir} (as {ONNX_SUBFOLDER}/)" if args.onnx else "") + \
        " from embedding-ft"
    published = publish(what, args.repo_id, args.private, token, message)

    # 3. Report: where it is, and how an application loads it.
    if published.deleted:
        log.info(f"removed from the repo, not in what was published (kept in its history): {', '.join(published.deleted)}")
    log.info(f"published {'privately ' if published.private else ''}to {published.repo_url} ({published.commit_url})")
    log.info(f'load it with SentenceTransformer("{args.repo_id}")' +
             (" and HF_TOKEN set (private repo)" if published.private else ""))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stages.publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo-id", required=True, help="the Hub repo, ORG/NAME (created if it does not exist)")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--onnx", action="store_true", help=f"also upload the ONNX export, as {ONNX_SUBFOLDER}/")
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR, help=f"the model folder (default {MODEL_DIR})")
    parser.add_argument("--onnx-dir", type=Path, default=ONNX_DIR, help=f"the ONNX export folder (default {ONNX_DIR})")
    return parser.parse_args()


if __name__ == "__main__":
    main()
