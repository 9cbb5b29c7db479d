"""Stage ``questions``: chunks -> ``data/questions/{train,val,test}.json``.

Questions for a split are generated only from that split's chunks, so no
val/test passage is ever a training positive; every file's ``corpus`` holds
all chunks, so retrieval is always over the whole corpus. Chunks of the extra
training documents (``data/corpus/extra_chunks.jsonl``) add training questions
only: they are in ``train.json``'s corpus and in no other file's.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from stages.lib.common.endpoint import env_or_param
from stages.lib.common.errors import run_stage
from stages.lib.common.files import write_json
from stages.lib.common.params import load_params
from stages.lib.documents.chunk_file import EXTRA_CHUNKS_FILE, load_chunks
from stages.lib.documents.chunking import SPLITS
from stages.lib.documents.lexical_overlap import mean_word_overlap
from stages.lib.documents.text import corpus_language
from stages.lib.questions.llm import generate_with_llm
from stages.lib.questions.offline import generate_offline, inverse_document_frequency
from stages.lib.questions.qa_dataset import build_dataset

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
    metrics: dict[str, float] = {}

    # 2. Generate, per split (the extra chunks' questions join the train split).
    if params.generator in ("llm", "llamaindex"):
        model = env_or_param(params.llm.model, "LLM_MODEL", "questions.llm.model")
        if params.generator == "llm":
            run = generate_with_llm(chunks + extra_chunks, params.llm, model, STORE_DIR, params.max_query_chars)
        else:
            from stages.lib.questions.llamaindex import generate_with_llamaindex

            run = generate_with_llamaindex(chunks + extra_chunks, params.llm, model, STORE_DIR)
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
        if extra_chunks:  # the target's questions stay exactly what they are without extra documents
            generated["train"] += generate_offline(extra_chunks, params.train_styles,
                                                   inverse_document_frequency(chunks + extra_chunks), params.seed,
                                                   params.max_query_chars)

    # 3. Write one seed-compatible file per split, and report.
    extra_ids = {chunk.id for chunk in extra_chunks}
    language = corpus_language(chunk.text for chunk in chunks)  # as BM25 cuts the corpus's words
    for split in SPLITS:
        dataset = build_dataset(generated.get(split, []), training_corpus if split == "train" else corpus)
        dataset.save(OUTPUT_DIR / f"{split}.json")
        metrics[f"{split}_queries"] = len(dataset.queries)
        metrics[f"{split}_pairs"] = sum(len(docs) for docs in dataset.relevant_docs.values())
        # How lexical the split is: the mean share of a question's words its passages hold (people's: 0.34-0.50).
        metrics[f"{split}_word_overlap"] = mean_word_overlap(dataset, language)
        for style, count in sorted(Counter(dataset.query_styles.values()).items()):
            metrics[f"{split}_{style}"] = count
        n_chunks = sum(1 for c in chunks if c.split == split)
        print(f"[questions] {split}: {len(dataset.queries)} queries over {n_chunks} chunks ({params.generator})")
        if split == "train":
            extra_queries = sum(1 for docs in dataset.relevant_docs.values() if set(docs) <= extra_ids)
            metrics["train_queries_from_extra_documents"] = extra_queries
    if extra_chunks:
        print(f"[questions] of the train queries, {extra_queries} are about the {len(extra_chunks)} chunks of the "
              "extra training documents")
    write_json(METRICS_FILE, metrics)


if __name__ == "__main__":
    main()
