"""Stage ``questions``: chunks -> ``data/questions/{train,val,test}.json``.

Questions for a split are generated only from that split's chunks, so no
val/test passage is ever a training positive; every file's ``corpus`` holds
all chunks, so retrieval is always over the whole corpus. Chunks of the extra
training documents (``data/corpus/extra_chunks.jsonl``) add training questions
only: they are in ``train.json``'s corpus and in no other file's.
"""

from __future__ import annotations

import logging
from pathlib import Path

from stages.lib.common.errors import run_stage
from stages.lib.common.files import write_json
from stages.lib.common.params import load_params
from stages.lib.documents.chunk_file import EXTRA_CHUNKS_FILE, load_chunks
from stages.lib.documents.chunking import SPLITS
from stages.lib.documents.text import corpus_language
from stages.lib.questions.generation import generate_questions, split_metrics
from stages.lib.questions.qa_dataset import build_dataset

log = logging.getLogger(__name__)

OUTPUT_DIR = Path("data/questions")
METRICS_FILE = Path("metrics/questions.json")
# Every paid LLM answer, keyed by what determined it; a persistent DVC output.
STORE_DIR = Path("data/llm_cache")


@run_stage("questions")
def main() -> None:
    # 1. The chunks: the target corpus, and the extra training documents' (all in the train split).
    params = load_params().questions
    chunks, extra_chunks = load_chunks(), load_chunks(EXTRA_CHUNKS_FILE)
    corpus = {chunk.id: chunk.text for chunk in chunks}
    training_corpus = {**corpus, **{chunk.id: chunk.text for chunk in extra_chunks}}
    STORE_DIR.mkdir(parents=True, exist_ok=True)  # a persistent DVC output, even when unused

    # 2. Generate, per split (the extra chunks' questions join the train split).
    generated, generator_stats = generate_questions(chunks, extra_chunks, params, STORE_DIR)
    metrics = dict(generator_stats)  # the LLM's calls and cost first, as the metrics file has always had them

    # 3. Write one seed-compatible file per split, and report.
    extra_ids = {chunk.id for chunk in extra_chunks}
    language = corpus_language(chunk.text for chunk in chunks)  # as BM25 cuts the corpus's words
    for split in SPLITS:
        dataset = build_dataset(generated.get(split, []), training_corpus if split == "train" else corpus)
        dataset.save(OUTPUT_DIR / f"{split}.json")
        metrics.update(split_metrics(split, dataset, language, extra_ids))
        n_chunks = sum(1 for c in chunks if c.split == split)
        log.info(f"{split}: {len(dataset.queries)} queries over {n_chunks} chunks ({params.generator})")
    if extra_chunks:
        log.info(f"of the train queries, {metrics['train_queries_from_extra_documents']} are about the "
                 f"{len(extra_chunks)} chunks of the extra training documents")
    write_json(METRICS_FILE, metrics)


if __name__ == "__main__":
    main()
