"""Look at one question: the top results of every retriever, side by side.

    python -m stages.search "上市公司高管什么时候可以卖股票？"
    python -m stages.search --k 10 "insider trading penalty"

Not a DVC stage: it reads what the pipeline wrote (chunks, models, the fusion ``evaluate`` chose)
and changes nothing. When the question is one of a question set's (synthetic or golden, matched
on its normalised text), its labelled chunks are marked ``*``. Corpus vectors come from the
``evaluate`` stage's cache when they are there, so a search costs one query encoding per model.
"""

from __future__ import annotations

import argparse
import os

from stages.lib.common.errors import UserError, run_stage
from stages.lib.common.params import load_params
from stages.lib.documents.chunk_file import load_chunks
from stages.lib.retrieval.one_query import MODELS, find_label, format_side_by_side, rank_all


@run_stage("search")
def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = _arguments()
    params = load_params()

    # 1. Inputs: the corpus, the models (each missing piece names the stage that makes it), the label.
    chunks = load_chunks()
    for path, stage in MODELS.values():
        if not path.is_dir():
            raise UserError(f"{path} is missing: run `dvc repro {stage}` first.")
    label = find_label(args.query, chunks, params)

    # 2. Rank with every retriever; the hybrid fuses the way `evaluate` chose.
    rankings = rank_all(args.query, chunks, params, depth=max(args.k, 100))

    # 3. Report.
    if label:
        print(f"from {label.set_name}; labelled chunks are marked *")
    print(format_side_by_side(rankings, {c.id: c for c in chunks}, label.relevant if label else frozenset(),
                              args.k, args.width))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stages.search", description=__doc__.splitlines()[0])
    parser.add_argument("query", help="the question, in quotes")
    parser.add_argument("--k", type=int, default=5, help="results per retriever (default 5)")
    parser.add_argument("--width", type=int, default=36, help="display columns per retriever (default 36)")
    args = parser.parse_args()
    if not args.query.strip():
        parser.error("the query is empty")
    if args.k < 1 or args.width < 12:
        parser.error("--k must be >= 1 and --width >= 12")
    return args


if __name__ == "__main__":
    main()
