"""A FAISS index of the bundled corpus, built with the fine-tuned model, saved, loaded back and searched.

The chunks the pipeline wrote (``data/corpus/chunks.jsonl``) are embedded with the model's passage
prompt, as unit vectors, into an exact inner-product index (``faiss.IndexFlatIP``: on unit vectors the
inner product is the cosine the evaluation ranks by). The index is written to ``--index-dir`` with the
chunk ids in index order; the next run loads it instead of embedding the corpus again, unless the
chunks or the model changed (or ``--rebuild``). Questions are embedded with the query prompt.

Run from the repository root, after ``dvc repro`` (or ``dvc pull``) made the model and the chunks::

    python examples/vector_store.py                                    # builds examples/faiss_index/, then searches
    python examples/vector_store.py --question "开一家券商最少要多少注册资本？" --question "证券交易所可以临时停市吗？"

Each hit is printed as: rank, cosine, chunk id, text. The chunk id is the ``id`` in chunks.jsonl,
the same id the evaluation's per-query results and the UI use.

Why the prompts: the model was trained and evaluated with ``query: `` before questions and
``passage: `` before chunks (saved in the folder's ``config_sentence_transformers.json``);
``encode_query`` / ``encode_document`` apply them. Works offline (``HF_HUB_OFFLINE=1`` is set unless
already set). For millions of chunks, swap ``IndexFlatIP`` for an approximate index (``IndexHNSWFlat``
with ``METRIC_INNER_PRODUCT``); a few thousand chunks search exactly in milliseconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

try:
    import faiss
except ImportError:
    sys.exit("error: FAISS is not installed. Run `pip install -e '.[examples]'` (faiss-cpu).")

DEFAULT_QUESTIONS = ["开一家券商最少要多少注册资本？"]  # "What is the least registered capital to open a brokerage?"
INDEX_FILE, MANIFEST_FILE = "chunks.faiss", "manifest.json"


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing downloads at run time
    args = _arguments()

    # 1. The model folder and the chunks, checked before anything heavy loads.
    check_model_folder(args.model)
    chunks = read_chunks(args.chunks)
    fingerprint = _fingerprint(args.model, args.chunks)

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(args.model))

    # 2. The index: loaded when it was built from these chunks with this model, else built and saved.
    saved = None if args.rebuild else load_index(args.index_dir, fingerprint)
    if saved is None:
        index, ids = build_index(model, chunks)
        save_index(index, ids, args.index_dir, fingerprint)
        print(f"Built an index of {index.ntotal} chunks ({index.d} dimensions) and saved it to {args.index_dir}")
    else:
        index, ids = saved
        print(f"Loaded the index of {index.ntotal} chunks from {args.index_dir}")

    # 3. Each question, embedded with the query prompt, against the index.
    texts = {chunk["id"]: chunk["text"] for chunk in chunks}
    questions = args.question or DEFAULT_QUESTIONS
    scores, rows = index.search(model.encode_query(questions, normalize_embeddings=True), args.top_k)
    for question, question_scores, question_rows in zip(questions, scores, rows, strict=True):
        print(f"Top {args.top_k} for: {question}")
        for rank, (score, row) in enumerate(zip(question_scores, question_rows, strict=True), start=1):
            if row >= 0:  # -1 pads when the index holds fewer than top_k chunks
                print(f"{rank}  {score:.4f}  {ids[row]}  {' '.join(texts[ids[row]].split())[:90]}")


def build_index(model, chunks: list[dict]) -> tuple[faiss.Index, list[str]]:
    """Every chunk embedded with the passage prompt as a unit vector, in an exact inner-product index."""
    vectors = model.encode_document([chunk["text"] for chunk in chunks], normalize_embeddings=True,
                                    convert_to_numpy=True).astype("float32")
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index, [chunk["id"] for chunk in chunks]


def save_index(index: faiss.Index, ids: list[str], folder: Path, fingerprint: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(folder / INDEX_FILE))
    # FAISS keeps row numbers only: the chunk ids, in the same order, live beside it.
    (folder / MANIFEST_FILE).write_text(json.dumps({"fingerprint": fingerprint, "ids": ids}, ensure_ascii=False),
                                        encoding="utf-8")


def load_index(folder: Path, fingerprint: str) -> tuple[faiss.Index, list[str]] | None:
    """The saved index and its chunk ids; None when there is none, or it was built from other chunks or another model."""
    if not (folder / INDEX_FILE).is_file() or not (folder / MANIFEST_FILE).is_file():
        return None
    manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    if manifest.get("fingerprint") != fingerprint:
        print(f"The index in {folder} was built from other chunks or another model: building it again")
        return None
    index = faiss.read_index(str(folder / INDEX_FILE))
    if index.ntotal != len(manifest["ids"]):
        return None
    return index, manifest["ids"]


def _fingerprint(model: Path, chunks: Path) -> str:
    """What the index depends on: the chunk file and the model's weights and prompt config, by content."""
    digest = hashlib.sha256()
    for path in [chunks, *sorted(model.glob("*.safetensors")), model / "config_sentence_transformers.json"]:
        if path.is_file():
            digest.update(path.name.encode())
            with path.open("rb") as stream:
                for block in iter(lambda s=stream: s.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def check_model_folder(folder: Path) -> None:
    if not (folder / "modules.json").is_file():
        what = "is missing" if not folder.exists() else "is not a sentence-transformers folder (no modules.json)"
        _fail(f"{folder} {what}. Run `dvc repro` (or `dvc pull` to fetch a teammate's model) first, or pass --model FOLDER.")


def read_chunks(path: Path) -> list[dict]:
    """The pipeline's chunks: one JSON object per line with ``id`` and ``text``."""
    if not path.is_file():
        _fail(f"{path} is missing. Run `dvc repro` (or `dvc pull`) first: the corpus stage writes it. Or pass --chunks "
              "FILE, a JSON-lines file of {\"id\": ..., \"text\": ...} objects.")
    chunks = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not chunks or not all(isinstance(chunk.get("id"), str) and isinstance(chunk.get("text"), str) for chunk in chunks):
        _fail(f"{path} holds no chunks, or a line without a string \"id\" and \"text\".")
    return chunks


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/finetuned"),
                        help="the sentence-transformers folder to embed with (default models/finetuned)")
    parser.add_argument("--chunks", type=Path, default=Path("data/corpus/chunks.jsonl"),
                        help="the chunks to index (default data/corpus/chunks.jsonl, the corpus stage's)")
    parser.add_argument("--index-dir", type=Path, default=Path("examples/faiss_index"),
                        help="where the index is saved and loaded from (default examples/faiss_index)")
    parser.add_argument("--rebuild", action="store_true", help="build the index again even if a saved one fits")
    parser.add_argument("--question", action="append", help="what to search for (repeat for several)")
    parser.add_argument("--top-k", type=int, default=3, help="hits per question (default 3)")
    args = parser.parse_args()
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")
    return args


if __name__ == "__main__":
    main()
