"""The run's evaluation as the report page shows it, read from the files the pipeline wrote.

* ``metrics/eval.json``: the verdict (``retrieval/verdict.py``'s sentences, with the notice when no golden set
  judges); per question set, every retriever's metrics, 95% intervals and differences to BM25
  and to the base model (the synthetic test split's rows sit at the top level, each other set nested), the
  fusion the hybrid used; the verdict per set is ``intervals.verdict``'s, as ``evaluate`` prints it.
* ``metrics/eval_by_overlap.json``: every set by word-overlap band.
* ``metrics/hit_rate.csv``: the hit@k curves, per set and retriever.
* ``metrics/eval_by_style.json``: the synthetic test split by query style.
* ``metrics/train.json``: what training selected (the step, the base model itself, the WiSE-FT α) and why.
* ``data/eval/per_query.jsonl``: the error analysis: per set, the questions where the fine-tuned model found
  its labelled chunk later than the base model or BM25 did (lost) or earlier (won), with every retriever's rank,
  each linked to its search view.

A file that is missing or unreadable leaves its part empty with a problem naming the file and the stage.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from stages.lib.common.files import read_json, read_jsonl
from stages.lib.documents.lexical_overlap import BANDS
from stages.lib.retrieval.eval_report import (
    BY_OVERLAP_FILE,
    BY_STYLE_FILE,
    CURVE_FILE,
    METRICS_FILE,
    PER_QUERY_FILE,
)
from stages.lib.retrieval.fusion import Fusion
from stages.lib.retrieval.intervals import verdict
from stages.lib.retrieval.verdict import LABEL_URL, NO_JUDGE, judge_notice, verdict_lines
from stages.lib.ui.known_questions import SYNTHETIC_PREFIX, KnownQuestions
from stages.lib.ui.run_files import REPORT, Problem

TRAIN_FILE = Path("metrics/train.json")
SYNTHETIC_TEST = "test"
RETRIEVER_ORDER = ("base", "seed_recipe", "finetuned", "bm25", "hybrid")
COMPARED = ("base", "bm25")  # the fine-tuned model's error analysis: against the model it started from, and BM25
LANGUAGES = {"zh": "Chinese", "en": "English"}


def set_title(name: str) -> str:
    if name == SYNTHETIC_TEST:
        return "Synthetic test split (generated questions about held-out chunks; not a judge)"
    if name == NO_JUDGE:
        return "no golden set"
    if name.startswith("golden_test_"):
        language, _, rest = name.removeprefix("golden_test_").partition("_")
        which = ("every question" if rest == "incl_trained_passages"
                 else "questions whose passages were never training positives" if rest == "unseen_passages" else rest)
        return f"Golden test, {LANGUAGES.get(language, language)}: {which}"
    return name


def _read(path: Path, reader: Callable, problems: list[Problem], stage: str):
    if not path.is_file():
        return None  # reported with the missing outputs
    try:
        return reader(path)
    except (OSError, ValueError, UnicodeDecodeError, csv.Error) as error:
        problems.append(Problem(f"{path} cannot be read ({type(error).__name__}: {str(error)[:120]}): run "
                                f"`dvc repro {stage}`, or `git checkout {path}` for the committed one.", "invalid", stage,
                                (REPORT,)))
        return None


def _read_curve(path: Path) -> dict[str, dict[str, list[list[float]]]]:
    curves: dict[str, dict[str, list[list[float]]]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            curves.setdefault(row["question_set"], {}).setdefault(row["retriever"], []).append(
                [int(row["k"]), float(row["hit_rate"])])
    return curves


def build_report(known: KnownQuestions, train_alphas: list[float], language: str = "") -> dict:
    """The report's parts; golden sets in ``language`` (the corpus's) come first."""
    problems: list[Problem] = []
    metrics = _read(METRICS_FILE, read_json, problems, "evaluate")
    if metrics is not None and not isinstance(metrics, dict):
        problems.append(Problem(f"{METRICS_FILE} is not the evaluate stage's metrics (not a JSON object): run "
                                "`dvc repro evaluate`.", "invalid", "evaluate", (REPORT,)))
        metrics = None
    report = {
        "verdict": _verdict(metrics) if metrics else None,
        "sets": _sets(metrics, language) if metrics else [],
        "run": _run(metrics) if metrics else None,
        "curves": _read(CURVE_FILE, _read_curve, problems, "evaluate") or {},
        "by_style": _by_style(_read(BY_STYLE_FILE, read_json, problems, "evaluate")),
        "by_overlap": _by_overlap(_read(BY_OVERLAP_FILE, read_json, problems, "evaluate")),
        "training": _training(_read(TRAIN_FILE, read_json, problems, "train"), train_alphas),
        "errors": _errors(_read(PER_QUERY_FILE, read_jsonl, problems, "evaluate"), known),
    }
    report["problems"] = [p.to_json() for p in problems]
    return report


def _verdict(metrics: dict) -> dict | None:
    """The verdict ``evaluate`` printed first, as its sentences, with the notice when the judge is synthetic."""
    verdict = metrics.get("verdict")
    if not isinstance(verdict, dict):
        return None  # metrics from before the verdict existed
    run = _run(metrics)
    fusion = f"{run['fusion']}, {run['fusion_chosen_on']}" if run["fusion"] else ""
    judge = str(verdict.get("judge", NO_JUDGE))
    return {**verdict, "lines": verdict_lines(verdict, set_title(judge), fusion), "notice": judge_notice(verdict),
            "label_url": LABEL_URL}


def _by_overlap(by_overlap) -> list[dict]:
    """Per set, each retriever's hit@5 and MRR@10 by word-overlap band."""
    if not isinstance(by_overlap, dict):
        return []
    out = []
    for name, block in by_overlap.items():
        if not isinstance(block, dict):
            continue
        bands = [{"band": band, "from": low, "to": None if high == float("inf") else high,
                  "queries": block.get(band, {}).get("queries", 0),
                  "rows": {r: v for r, v in block.get(band, {}).items() if isinstance(v, dict)}}
                 for band, low, high in BANDS if isinstance(block.get(band), dict)]
        out.append({"name": name, "title": set_title(name), "word_overlap": block.get("word_overlap"), "bands": bands})
    return out


def _ordered(retrievers: dict) -> list[str]:
    names = [n for n in RETRIEVER_ORDER if n in retrievers]
    return names + sorted(n for n in retrievers if n not in names)


def _sets(metrics: dict, language: str) -> list[dict]:
    top = {name: row for name, row in metrics.items() if isinstance(row, dict) and "hit@5" in row}
    nested = {name: block for name, block in sorted(metrics.items(), key=lambda item: _set_order(item[0], language))
              if isinstance(block, dict) and "hit@5" not in block and any(isinstance(v, dict) for v in block.values())}
    sets = []
    # The golden sets first (they judge), the synthetic test split last, with no verdicts of its own.
    for name, block, queries in [*((n, b, b.get("queries")) for n, b in nested.items()),
                                 (SYNTHETIC_TEST, top, metrics.get("test_queries"))]:
        rows = {r: v for r, v in block.items() if isinstance(v, dict)}
        if not rows:
            continue
        synthetic = name == SYNTHETIC_TEST
        overlap = metrics.get("test_word_overlap") if synthetic else block.get("word_overlap")
        sets.append({"name": name, "title": set_title(name), "queries": queries, "order": _ordered(rows), "rows": rows,
                     "verdicts": [_NOT_A_JUDGE] if synthetic else _verdicts(rows), "word_overlap": overlap})
    return sets


_NOT_A_JUDGE = ("Not a judge: generated questions reuse their passages' words (see their word overlap), which favours "
                "BM25; the verdict above is judged on questions people wrote, or says that there are none.")


def _set_order(name: str, language: str) -> tuple:
    """Golden sets of the corpus's language first; within a language, every question before the unseen passages."""
    return (not name.startswith(f"golden_test_{language}_"), "unseen" in name, name)


def _verdicts(rows: dict[str, dict]) -> list[str]:
    """Plain sentences per comparison with an interval: is the difference shown, and which way."""
    out = []
    for name, other in (("finetuned", "base"), ("finetuned", "bm25"), ("hybrid", "bm25")):
        row = rows.get(name, {})
        if f"hit@5_diff_vs_{other}_ci_low" not in row:
            continue
        parts = [f"{metric} {row[f'{metric}_diff_vs_{other}']:+.3f} [{row[f'{metric}_diff_vs_{other}_ci_low']:+.3f}, "
                 f"{row[f'{metric}_diff_vs_{other}_ci_high']:+.3f}]: {verdict(row, metric, other)}"
                 for metric in ("hit@5", "mrr@10") if f"{metric}_diff_vs_{other}_ci_low" in row]
        out.append(f"{name} − {other}: " + "; ".join(parts))
    return out


def _run(metrics: dict) -> dict:
    fusion = None
    if metrics.get("hybrid_fusion") in ("rrf", "convex") and isinstance(metrics.get("hybrid_dense_weight"), int | float):
        fusion = Fusion(metrics["hybrid_fusion"], float(metrics["hybrid_dense_weight"])).describe()
    tuned = metrics.get("tuning_queries")
    chosen_on = (f"chosen on golden val ({tuned} questions)" if tuned
                 else "fixed in params.yaml, or untuned with no golden val to choose on")
    keys = ("corpus_size", "test_queries", "device", "precision", "llamaindex_finetuned_hit@5",
            "ours_on_llamaindex_sample_hit@5", "llamaindex_sample_queries", "llamaindex_sample_corpus")
    return {"fusion": fusion, "fusion_chosen_on": chosen_on, **{k: metrics[k] for k in keys if k in metrics}}


def _by_style(by_style) -> list[dict]:
    if not isinstance(by_style, dict):
        return []
    out = []
    for style, block in by_style.items():
        if isinstance(block, dict):
            rows = {r: v for r, v in block.items() if isinstance(v, dict)}
            out.append({"style": style, "queries": block.get("queries"), "order": _ordered(rows), "rows": rows})
    return out


def _training(train, alphas: list[float]) -> dict | None:
    if not isinstance(train, dict) or "best_step" not in train:
        return None
    on = train.get("selected_on", "val")
    base, best = train.get("val_ndcg@10_base"), train.get("best_val_ndcg@10")
    if on == "final step":
        why = (f"No golden val is about this corpus, so the final step ({train['best_step']} of {train.get('steps', '?')}) "
               f"was kept. The synthetic val split drew the curve only (NDCG@10 {_f(best)} there, the base model's "
               f"{_f(base)}): its questions reuse their passages' words and are no judge.")
    elif train.get("base_model_selected"):
        why = (f"No fine-tuned step scored above the base model on {on} (NDCG@10 {_f(base)} at step 0), so the base model "
               "itself was kept: models/trained is the base model with its prompts.")
    else:
        why = (f"Step {train['best_step']} of {train.get('steps', '?')} scored the best NDCG@10 on {on}: {_f(best)}, against "
               f"the base model's {_f(base)} (step 0, a candidate too); it was kept.")
    alpha = train.get("wise_ft_alpha")
    if len(alphas) > 1 and isinstance(alpha, int | float):
        tried = ", ".join(f"{a:g}" for a in alphas)
        why += (f" Weight-space ensembling with the base tried α ∈ {{{tried}}} and kept α {alpha:g}"
                + (" (the fine-tuned weights as they are)." if alpha == 1 else
                   f": the saved weights are {alpha:g} x fine-tuned + {1 - alpha:g} x base."))
    keys = ("selected_on", "best_step", "steps", "best_val_ndcg@10", "val_ndcg@10_base", "base_model_selected",
            "wise_ft_alpha", "train_pairs", "train_pairs_available", "val_queries", "learning_rate", "device", "precision",
            "train_seconds", "tokens_added")
    return {"why": why, "alphas": alphas, **{k: train[k] for k in keys if k in train}}


def _f(value) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "?"


def _errors(rows, known: KnownQuestions) -> dict:
    """Set -> {"total", "vs_base"/"vs_bm25": {"lost": [...], "won": [...]}}; rows sorted by how much changed."""
    if not isinstance(rows, list):
        return {}
    out: dict[str, dict] = {}
    for row in rows:
        if not isinstance(row, dict) or "finetuned_rank" not in row:
            continue
        block = out.setdefault(str(row.get("set")), {"title": set_title(str(row.get("set"))), "total": 0,
                                                    **{f"vs_{o}": {"lost": [], "won": []} for o in COMPARED}})
        block["total"] += 1
        ranks = {name.removesuffix("_rank"): value for name, value in row.items() if name.endswith("_rank")}
        entry = {"id": row.get("id"), "query": row.get("query", ""), "style": row.get("style", ""), "ranks": ranks,
                 "link": _link(row, known)}
        for other in COMPARED:
            if other not in ranks:
                continue
            change = _reciprocal(ranks["finetuned"]) - _reciprocal(ranks[other])
            if change:
                block[f"vs_{other}"]["lost" if change < 0 else "won"].append({**entry, "change": round(change, 4)})
    for block in out.values():
        for other in COMPARED:
            for side in ("lost", "won"):
                block[f"vs_{other}"][side].sort(key=lambda e: (-abs(e["change"]), str(e["id"])))
    return out


def _reciprocal(rank) -> float:
    """1/rank: how much a rank is worth to MRR (no labelled chunk in the ranking: 0)."""
    return 1.0 / rank if isinstance(rank, int) and rank > 0 else 0.0


def _link(row: dict, known: KnownQuestions) -> str:
    """The question's search view: by set and id when a known set holds it, else by its text."""
    qid, name = str(row.get("id")), str(row.get("set"))
    set_id = f"{SYNTHETIC_PREFIX}test" if name == SYNTHETIC_TEST else known.golden_set_of(qid)
    if set_id and set_id in known.sets and qid in known.sets[set_id].questions:
        return "/?" + urlencode({"set": set_id, "qid": qid})
    return "/?" + urlencode({"q": row.get("query", "")})
