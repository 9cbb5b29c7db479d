"""Benchmark: label 50 questions through the real labelling view in Chromium, then evaluate on what was labelled.

On a reproduced default run (``--project``: a folder where ``dvc repro`` ran; nothing in it is changed):

1. ``--questions`` Chinese questions of the Securities Law golden set (``data/golden/securities_law.jsonl``), a
   seeded sample, half from its val split and half from its test split, written to a ``.txt`` question list;
2. ``python -m stages.ui`` over a copy of the run's outputs (models linked), and headless Chromium (the system's,
   driven by Playwright) on its ``/label`` page: the list imported through the file input, then, question after
   question, a scripted labeller that reads like a person scrolling: each chunk of the pool in turn is scrolled to
   the top of the screen and stays there ``--dwell`` seconds, and the chunks the golden set's articles resolve to
   (the "person" is an oracle) are clicked; then Save (or "none relevant" when none of them is in the pool);
3. what the UI recorded, read back from the golden file it wrote: per question the seconds (the page's clock:
   visible time from showing the question to saving it), the share of the pool looked at, the pool's size; and
   the pool's recall: the share of questions with a golden-relevant chunk in the pool at all (at the set's
   ``labelling.pool_depth``, and at deeper depths from the search view's columns, to see whether 5 suffices);
4. the ``evaluate`` stage (this repository's code) on a copy of the run three times, with one golden set each: the
   whole Securities Law set, the same 50 questions with their article labels (split as the labelling view split
   them), and the 50 questions as labelled in the browser.

No person labelled here: the timings are the UI's measurements of a scripted labeller with a fixed dwell, which
say that the page measures and saves, and how long the machinery takes, not how long a person reads.

    python -m benchmarks.labelling_run --project /path/to/reproduced/run --json benchmarks/results/labelling_run.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from benchmarks.project import REPO_ROOT, write_result
from benchmarks.ui_latency import _free_port, _request, _wait, cpu_name

SET_NAME = "labelling_run"
GOLDEN = Path("data/golden/securities_law.jsonl")
DEEPER = (10, 20)  # pool depths also measured, from the search view's four columns


def _lscpu_model() -> str:
    found = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in found.splitlines() if line.startswith("Model name")), cpu_name())


def _link_run(project: Path, folder: Path) -> Path:
    """What the UI and ``evaluate`` read, copied (small) or linked (the models), so the run itself stays untouched."""
    folder.mkdir(parents=True)
    for name in ("params.yaml", "dvc.yaml", "dvc.lock"):
        shutil.copy2(project / name, folder / name)
    for name in ("data/corpus", "data/questions", "data/embedding_cache", "data/golden", "metrics"):
        shutil.copytree(project / name, folder / name, symlinks=True)
    if (project / "data/sample_transfer").is_dir():  # evaluate's transfer folder (a run from before it has none)
        shutil.copytree(project / "data/sample_transfer", folder / "data/sample_transfer")
    (folder / "models").mkdir()
    for model in (project / "models").iterdir():
        if model.is_dir():
            (folder / "models" / model.name).symlink_to(model.resolve(), target_is_directory=True)
    return folder


def _sample(project: Path, golden_file: Path, n: int, seed: int):
    from stages.lib.retrieval.golden import load_golden

    golden = load_golden(project / golden_file)
    chosen = []
    for split, count in (("val", n // 2), ("test", n - n // 2)):
        candidates = sorted((q for q in golden.questions if q.language == "zh" and q.split == split), key=lambda q: q.id)
        if len(candidates) < count:
            raise SystemExit(f"{golden_file} has {len(candidates)} Chinese {split} questions; --questions {n} needs {count}")
        chosen += random.Random(f"{seed}:{split}").sample(candidates, count)
    return golden, chosen


def _label_in_browser(base_url: str, questions, answers: dict[str, set[str]], question_file: Path, dwell: float) -> dict:
    """Import the list and label every question as a reader would; returns what the page showed, per question."""
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("headless Chromium is needed: apt-get install -y chromium (or set CHROMIUM=/path/to/chrome)")
    shown: dict[str, dict] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(120_000)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{base_url}/label?{urlencode({'set': SET_NAME})}")
        page.wait_for_selector("#label-progress .progress-counts")
        page.set_input_files("#label-file", str(question_file))
        page.click("#label-import")
        page.wait_for_selector(".import-summary")
        for _ in questions:
            page.wait_for_selector("#label-pool li.pool-card")
            text = page.inner_text("#label-question-text")
            ids = page.eval_on_selector_all("#label-pool li.pool-card", "cards => cards.map(card => card.dataset.chunk)")
            marked = []
            for chunk_id in ids:  # top to bottom, each card scrolled to the top of the screen and read
                card = page.locator(f"#label-pool li[data-chunk='{chunk_id}']")
                box = card.bounding_box()
                page.mouse.move(640, 450)
                page.mouse.wheel(0, box["y"] - 60)
                page.wait_for_timeout(dwell * 1000)
                if chunk_id in answers[text]:
                    card.locator(".pool-check").click()
                    marked.append(chunk_id)
            page.click("#label-save" if marked else "#label-none")
            page.wait_for_function(f"() => document.querySelector('#label-done') || document.querySelector("
                                   f"'#label-question-text').textContent !== {json.dumps(text)}")
            shown[text] = {"pool": ids, "marked": marked}
        page.wait_for_selector("#label-done")
        browser.close()
    if errors:
        raise SystemExit(f"errors in the page's script: {errors}")
    return shown


def _evaluate(project: Path, folder: Path, golden_file: Path) -> dict:
    """``python -m stages.evaluate`` (this repository's code) on a copy of the run with ``golden_file`` as its one
    golden set; returns metrics/eval.json."""
    from ruamel.yaml import YAML

    run = _link_run(project, folder)
    shutil.copytree(REPO_ROOT / "stages", run / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    target = run / "data/golden" / golden_file.name
    if golden_file.resolve() != target.resolve():
        shutil.copy2(golden_file, target)
    yaml = YAML()
    params = yaml.load((run / "params.yaml").read_text(encoding="utf-8"))
    params["evaluate"]["golden_sets"] = [f"data/golden/{golden_file.name}"]
    params["evaluate"]["llamaindex_check"] = False  # the cross-check is about the synthetic split, not this question
    with (run / "params.yaml").open("w", encoding="utf-8") as handle:
        yaml.dump(params, handle)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "stages.evaluate"], cwd=run, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"evaluate failed on {golden_file.name}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    metrics = json.loads((run / "metrics/eval.json").read_text(encoding="utf-8"))
    metrics["_seconds"] = round(time.perf_counter() - started, 1)
    return metrics


def _spread(values: list[float]) -> dict:
    ordered = sorted(values)

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * (len(ordered) - 1) + 0.5))], 3)

    return {"n": len(values), "median": round(statistics.median(values), 3), "min": ordered[0], "p10": at(0.1),
            "p25": at(0.25), "p75": at(0.75), "p90": at(0.9), "max": ordered[-1]}


def _golden_rows(metrics: dict) -> dict:
    """Per golden test set of the metrics: its question count and each retriever's hit@5 and MRR@10 with intervals."""
    out = {}
    for name, block in metrics.items():
        if not (isinstance(block, dict) and name.startswith("golden_test_zh")):
            continue
        rows = {}
        for retriever in ("base", "finetuned", "bm25", "hybrid"):
            row = block.get(retriever) or {}
            rows[retriever] = {k: row[k] for k in ("hit@5", "hit@5_ci_low", "hit@5_ci_high", "mrr@10", "mrr@10_ci_low",
                                                   "mrr@10_ci_high", "hit@5_diff_vs_base", "hit@5_diff_vs_base_ci_low",
                                                   "hit@5_diff_vs_base_ci_high") if k in row}
        out[name] = {"queries": block.get("queries"), "retrievers": rows}
    out["tuning_queries"] = metrics.get("tuning_queries")
    out["hybrid"] = f"{metrics.get('hybrid_fusion')} {metrics.get('hybrid_dense_weight')}"
    out["evaluate_seconds"] = metrics.get("_seconds")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.labelling_run", description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True, help="a reproduced default run (the Securities Law)")
    parser.add_argument("--questions", type=int, default=50, help="questions to label (default 50)")
    parser.add_argument("--golden", type=Path, default=GOLDEN,
                        help=f"the golden set the questions and the oracle's answers come from (default {GOLDEN})")
    parser.add_argument("--seed", type=int, default=0, help="of the question sample (default 0)")
    parser.add_argument("--dwell", type=float, default=0.6,
                        help="seconds the scripted reader stays on each chunk (default 0.6: just over the 0.5 s a chunk must "
                             "be half in view to count as looked at)")
    parser.add_argument("--evaluate", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the evaluate stage on the labelled set and its comparisons (default: yes)")
    parser.add_argument("--work", type=Path, help="keep the copies and the labelled set here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write the result here (relative: to the repository)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    from stages.lib.common.files import read_jsonl
    from stages.lib.common.params import load_params
    from stages.lib.documents.chunking import Chunk
    from stages.lib.retrieval.golden import resolve

    project = args.project.resolve()
    work = (args.work or Path(tempfile.mkdtemp(prefix="labelling-run-"))).resolve()
    labelling_copy = _link_run(project, work / "labelling")
    pool_depth = load_params(labelling_copy / "params.yaml").labelling.pool_depth

    # 1. The questions, and what the oracle knows of them.
    chunks = [Chunk(**row) for row in read_jsonl(project / "data/corpus/chunks.jsonl")]
    golden, chosen = _sample(project, args.golden, args.questions, args.seed)
    relevant = resolve(golden, chunks)
    answers = {q.query: set(relevant[q.id]) for q in chosen}
    question_file = work / f"{args.golden.stem}_questions.txt"
    question_file.write_text("".join(q.query + "\n" for q in chosen), encoding="utf-8")

    # 2. The UI and the browser.
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = work / "ui.log"
    with log.open("w", encoding="utf-8") as handle:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "stages.ui", "--project", str(labelling_copy), "--port", str(port)],
                                   cwd=work, env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)},
                                   stdout=handle, stderr=subprocess.STDOUT)
    try:
        startup_s = _wait(base_url, process, log, started)
        labelling_started = time.perf_counter()
        shown = _label_in_browser(base_url, chosen, answers, question_file, args.dwell)
        labelling_s = time.perf_counter() - labelling_started
        deeper = {}
        for depth in DEEPER:  # the union of the four columns at k = depth: the pool a deeper pool_depth would give
            deeper[depth] = {}
            for q in chosen:
                _, view = _request(base_url + "/api/search", {"q": q.query, "k": depth})
                deeper[depth][q.query] = {r["id"] for column in view["columns"] for r in column["results"]}
    finally:
        process.terminate()
        process.wait(timeout=30)

    # 3. What the UI recorded.
    labelled_file = labelling_copy / "data/golden" / f"{SET_NAME}.jsonl"
    rows = {row["query"]: row for row in read_jsonl(labelled_file)}
    per_question = []
    for q in chosen:
        row, seen_on_page = rows[q.query], shown[q.query]
        in_pool = answers[q.query] & set(seen_on_page["pool"])
        per_question.append({
            "golden_id": q.id, "id": row["id"], "query": q.query, "style": q.style, "golden_split": q.split,
            "labelled_split": row["split"], "golden_relevant": len(answers[q.query]), "relevant_in_pool": len(in_pool),
            "marked": len(row.get("passages", [])), "no_relevant_chunk": row.get("no_relevant_chunk") is True,
            "pool": row["labelling"]["pool"], "seen": row["labelling"]["seen"], "seconds": row["labelling"]["seconds"],
            **{f"relevant_in_pool_at_{d}": len(answers[q.query] & deeper[d][q.query]) for d in DEEPER},
        })
    n = len(per_question)

    def share(key: str) -> float:
        return round(sum(p[key] > 0 for p in per_question) / n, 3)

    result = {
        "command": "python -m benchmarks.labelling_run --project <a reproduced default run>"
                   + (f" --questions {args.questions}" if args.questions != 50 else "")
                   + (f" --dwell {args.dwell}" if args.dwell != 0.6 else ""),
        "what": ("A scripted labeller (an oracle, not a person) labelled these questions through the real labelling view in "
                 "headless Chromium: it imported them as a .txt file, scrolled through each question's pool top to bottom "
                 f"({args.dwell} s on each chunk), clicked the chunks the golden set's articles resolve to, and saved. The "
                 "seconds and shares below are what the page measured and saved for that labeller: they show the page's "
                 "measuring and saving work, not how long a person takes to read and judge a pool."),
        "cpu": _lscpu_model(), "cores": os.cpu_count(), "load_average_1min_after": round(os.getloadavg()[0], 2),
        "code_revision": subprocess.run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"], capture_output=True,
                                        text=True).stdout.strip() or None,
        "questions": n, "source": f"{args.golden}, Chinese questions, seed {args.seed}",
        "golden_splits": {s: sum(p["golden_split"] == s for p in per_question) for s in ("val", "test")},
        "labelled_splits": {s: sum(p["labelled_split"] == s for p in per_question) for s in ("val", "test")},
        "no_relevant_chunk": sum(p["no_relevant_chunk"] for p in per_question),
        "pool_depth": pool_depth, "ui_startup_s": round(startup_s, 1), "labelling_wall_s": round(labelling_s, 1),
        "seconds_per_question": _spread([p["seconds"] for p in per_question]),
        "pool_size": _spread([p["pool"] for p in per_question]),
        "seen_share": _spread([round(p["seen"] / p["pool"], 3) for p in per_question if p["pool"]]),
        "pool_recall": {
            f"any_relevant_at_depth_{pool_depth}": share("relevant_in_pool"),
            f"all_relevant_at_depth_{pool_depth}": round(sum(p["relevant_in_pool"] == p["golden_relevant"]
                                                             for p in per_question) / n, 3),
            **{f"any_relevant_at_depth_{d}": share(f"relevant_in_pool_at_{d}") for d in DEEPER},
        },
        "per_question": per_question,
    }

    # 4. What evaluate says on them.
    if args.evaluate:
        label_split = {p["golden_id"]: p["labelled_split"] for p in per_question}
        same_questions = work / f"{args.golden.stem}_{n}_articles.jsonl"
        same_questions.write_text("".join(
            json.dumps({**json.loads(line), "split": label_split[json.loads(line)["id"]]}, ensure_ascii=False) + "\n"
            for line in (project / args.golden).read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["id"] in label_split), encoding="utf-8")
        result["evaluation"] = {
            "full_golden_set": _golden_rows(_evaluate(project, work / "eval-full", project / args.golden)),
            f"same_{n}_article_labels": _golden_rows(_evaluate(project, work / "eval-articles", same_questions)),
            f"labelled_{n}": _golden_rows(_evaluate(project, work / "eval-labelled", labelled_file)),
            "note": ("Each row: evaluate (this repository's code) on the same models, with that one golden set. The models "
                     f"were selected on the full set's val split, which holds half of these {n} questions, so they are not a "
                     f"clean held-out judge of this run. 'labelled_{n}' scores only the questions whose answer was in the "
                     "pool (no_relevant_chunk questions are not scored), with the chunks marked there."),
        }
    write_result(args.json, result)
    print(json.dumps({k: v for k, v in result.items() if k != "per_question"}, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
