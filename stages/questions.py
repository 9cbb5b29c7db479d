"""Stage ``questions``: chunks -> ``data/questions/{train,val,test}.json``.

Questions for a split are generated only from that split's chunks, so no
val/test passage is ever a training positive; every file's ``corpus`` holds
all chunks, so retrieval is always over the whole corpus.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from stages.lib.chunking import SPLITS
from stages.lib.corpus_io import load_chunks
from stages.lib.errors import UserError, run_stage
from stages.lib.files import write_json
from stages.lib.offline_questions import generate_offline, inverse_document_frequency
from stages.lib.params import load_params
from stages.lib.qa_dataset import build_dataset

OUTPUT_DIR = Path("data/questions")
METRICS_FILE = Path("metrics/questions.json")


@run_stage("questions")
def main() -> None:
    params = load_params().questions
    chunks = load_chunks()
    if params.generator != "offline":
        raise UserError(
            f"params.yaml key 'questions.generator' is {params.generator!r}, which this version does not "
            "support yet. Use 'offline'."
        )
    idf = inverse_document_frequency(chunks)
    corpus = {chunk.id: chunk.text for chunk in chunks}
    metrics: dict[str, int] = {}
    for split in SPLITS:
        styles = params.train_styles if split == "train" else params.eval_styles
        members = [chunk for chunk in chunks if chunk.split == split]
        generated = generate_offline(members, styles, idf, params.seed, params.max_query_chars)
        dataset = build_dataset(generated, corpus)
        dataset.save(OUTPUT_DIR / f"{split}.json")
        metrics[f"{split}_queries"] = len(dataset.queries)
        metrics[f"{split}_pairs"] = sum(len(docs) for docs in dataset.relevant_docs.values())
        for style, count in sorted(Counter(dataset.query_styles.values()).items()):
            metrics[f"{split}_{style}"] = count
        print(f"[questions] {split}: {len(dataset.queries)} queries over {len(members)} chunks")
    write_json(METRICS_FILE, metrics)


if __name__ == "__main__":
    main()
