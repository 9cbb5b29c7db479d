"""Stage ``questions``: chunks -> ``data/questions/{train,val,test}.json``.

Questions for a split are generated only from that split's chunks, so no
val/test passage is ever a training positive; every file's ``corpus`` holds
all chunks, so retrieval is always over the whole corpus.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from stages.lib.common.endpoint import env_or_param
from stages.lib.common.errors import run_stage
from stages.lib.common.files import write_json
from stages.lib.common.params import load_params
from stages.lib.documents.chunk_file import load_chunks
from stages.lib.documents.chunking import SPLITS
from stages.lib.questions.llm import generate_with_llm
from stages.lib.questions.offline import generate_offline, inverse_document_frequency
from stages.lib.questions.qa_dataset import build_dataset

OUTPUT_DIR = Path("data/questions")
METRICS_FILE = Path("metrics/questions.json")
# Every paid LLM answer, keyed by what determined it; a persistent DVC output.
STORE_DIR = Path("data/llm_cache")


@run_stage("questions")
def main() -> None:
    params = load_params().questions
    chunks = load_chunks()
    corpus = {chunk.id: chunk.text for chunk in chunks}
    STORE_DIR.mkdir(parents=True, exist_ok=True)  # a persistent DVC output, even when unused
    metrics: dict[str, float] = {}
    if params.generator in ("llm", "llamaindex"):
        model = env_or_param(params.llm.model, "LLM_MODEL", "questions.llm.model")
        if params.generator == "llm":
            run = generate_with_llm(chunks, params.llm, model, STORE_DIR, params.max_query_chars)
        else:
            from stages.lib.questions.llamaindex import generate_with_llamaindex

            run = generate_with_llamaindex(chunks, params.llm, model, STORE_DIR)
        generated = run.queries
        metrics.update(run.stats)
    else:
        idf = inverse_document_frequency(chunks)
        generated = {
            split: generate_offline(
                [c for c in chunks if c.split == split],
                params.train_styles if split == "train" else params.eval_styles,
                idf, params.seed, params.max_query_chars,
            )
            for split in SPLITS
        }
    for split in SPLITS:
        dataset = build_dataset(generated.get(split, []), corpus)
        dataset.save(OUTPUT_DIR / f"{split}.json")
        metrics[f"{split}_queries"] = len(dataset.queries)
        metrics[f"{split}_pairs"] = sum(len(docs) for docs in dataset.relevant_docs.values())
        for style, count in sorted(Counter(dataset.query_styles.values()).items()):
            metrics[f"{split}_{style}"] = count
        n_chunks = sum(1 for c in chunks if c.split == split)
        print(f"[questions] {split}: {len(dataset.queries)} queries over {n_chunks} chunks ({params.generator})")
    write_json(METRICS_FILE, metrics)


if __name__ == "__main__":
    main()
