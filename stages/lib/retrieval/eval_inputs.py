"""What the ``evaluate`` stage reads, checked before any slow work: its settings for this machine, the question
sets, the models to compare, their prompts, and the transfer documents with their golden questions.

A missing model, an empty test split, a bad golden label, a missing API key or a transfer folder that is not one
stops here, before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages.lib.common.endpoint import load_endpoint
from stages.lib.common.errors import UserError
from stages.lib.common.params import EvaluateParams, Params
from stages.lib.documents.chunk_file import load_chunks
from stages.lib.models.hardware import Hardware, encoding_batch_size, resolve_hardware
from stages.lib.models.prompts import resolve_prompts
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.retrieval.api_embeddings import resolve_model_name
from stages.lib.retrieval.eval_report import CURVE_MAX_K
from stages.lib.retrieval.question_sets import build_question_sets
from stages.lib.retrieval.side_by_side import DEPTH, Inputs
from stages.lib.retrieval.transfer import TransferInputs, load_transfer_inputs

QUESTIONS_FILE = Path("data/questions/test.json")
# The fine-tuned row is the model train selected (models/finetuned ships the same weights, with a card).
MODELS = {"base": Path("models/base"), "finetuned": Path("models/trained")}
# The seed-recipe baseline (stage seed_recipe): a row only when that stage trained a model there.
SEED_RECIPE_DIR = Path("models/seed_recipe")
# Vectors of local models (st-*/ shards) and of API embedding models (*.jsonl); a persistent DVC output.
EMBEDDING_CACHE_DIR = Path("data/embedding_cache")


@dataclass(frozen=True)
class Settings:
    """The evaluate params resolved for this machine, and the ranking depths they imply."""

    params: EvaluateParams  # batch_size resolved for the device
    hardware: Hardware  # bf16 where the CPU or GPU computes it natively; recorded in the metrics
    depth: int  # rankings keep this many chunks per query
    top_k: int  # the k of the llama-index cross-check

    @classmethod
    def resolve(cls, all_params: Params) -> Settings:
        params = all_params.evaluate
        hardware = resolve_hardware(all_params.compute.device, all_params.compute.precision, model_dir=MODELS["base"])
        params = params.model_copy(update={"batch_size": encoding_batch_size(params.batch_size, hardware.device)})
        depth = max(DEPTH, max(params.k_values), CURVE_MAX_K)
        return cls(params, hardware, depth, 5 if 5 in params.k_values else params.k_values[-1])


def load_inputs(all_params: Params) -> tuple[Inputs, TransferInputs]:
    """The side-by-side's inputs (the reported question sets and the one knobs are tuned on, each capped to one
    seeded sample for every retriever) and the transfer's (``transfer.py``)."""
    params = all_params.evaluate
    test = QADataset.load(QUESTIONS_FILE)
    if not test.queries:
        raise UserError(f"{QUESTIONS_FILE} has no queries: check 'questions.eval_styles' and 'corpus.split'.")
    # A missing key or model name fails here, before the models load.
    endpoint = load_endpoint("evaluate.api_embedding_models") if params.api_embedding_models else None
    api_models = [resolve_model_name(entry) for entry in params.api_embedding_models]
    for path in MODELS.values():
        if not path.is_dir():
            raise UserError(f"{path} is missing: run `dvc repro` so the stage that writes it runs.")
    EMBEDDING_CACHE_DIR.mkdir(parents=True, exist_ok=True)  # a persistent DVC output, even when unused
    chunks = load_chunks() if params.golden_sets else []
    sets = build_question_sets(test, chunks, params.golden_sets, params.max_queries)
    seed_recipe = {"seed_recipe": SEED_RECIPE_DIR} if (SEED_RECIPE_DIR / "modules.json").is_file() else {}
    models = {"base": MODELS["base"], **seed_recipe, "finetuned": MODELS["finetuned"]}
    prompts = resolve_prompts(all_params.model.query_prompt, all_params.model.document_prompt, MODELS["base"])
    transfer = load_transfer_inputs(Path(params.transfer_documents_dir), {c.source for c in chunks}, params.golden_sets,
                                    all_params.corpus, params.max_queries)
    return Inputs(sets, models, api_models, endpoint, prompts), transfer
