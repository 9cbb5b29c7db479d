"""See a run in a browser: compare the retrievers on any question, read the evaluation as a report, label a golden set.

    python -m stages.ui                                     # http://127.0.0.1:8090, this folder's run
    python -m stages.ui --host 127.0.0.1 --port 8090 --project /path/to/a/run
    python -m stages.ui --finetuned-dir models/finetuned    # search with another sentence-transformers folder

Not a DVC stage: it reads what the pipeline wrote (chunks, question sets, both models with the evaluation's
vector cache, the fusion ``evaluate`` chose, the metrics). The page has four views, each a URL that can be
shared: a question's top k of base, fine-tuned, BM25 and hybrid side by side (``/?q=...``), a known question with
its labelled chunks marked (``/?set=...&qid=...``), the evaluation report with its error analysis (``/report``),
and the labelling view (``/label?set=<name>``), where a person imports questions and marks the relevant chunks of
each question's pool. That view is the only writer: each save upserts one row of ``data/golden/<name>.jsonl``
(every file there is a golden set to ``evaluate.golden_sets``' default, so the next ``dvc repro`` selects on its
val split and reports its test split), and the imported questions wait in ``data/labelling/``. A missing or
out-of-date output (checked against ``dvc.lock``) is named on the page with the ``dvc repro`` stage to run; the
rest of the page keeps working. No login: it listens on 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from stages.lib.common.arguments import positive_int
from stages.lib.common.errors import UserError, run_stage

# The pipeline's models, as `python -m stages.search` and `evaluate` read them (models/finetuned ships the same weights).
DEFAULT_MODELS = {"base": Path("models/base"), "finetuned": Path("models/trained")}

log = logging.getLogger(__name__)


@run_stage("ui")
def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing downloads at run time
    started = time.perf_counter()
    args = _arguments()

    # 1. The run's folder and the address, before anything heavy loads.
    models = _enter_project(args)
    from stages.lib.serving.address import check_listen, is_loopback

    check_listen(args.host, args.port)
    from stages.lib.common.params import load_params

    params = load_params()

    # 2. Everything the page shows, loaded once; what is missing is named on the page, not a stop.
    from stages.lib.ui.startup import check_in_background, load_state

    state = load_state(Path.cwd(), params, models, args.threads)
    state.startup_s = round(time.perf_counter() - started, 1)
    from stages.lib.ui.app import LOOPBACK_NAMES, create_app

    app = create_app(state, allowed_hosts=[*LOOPBACK_NAMES, args.host] if is_loopback(args.host) else None)

    # 3. Say what is served; check the outputs against dvc.lock while serving, until Ctrl+C.
    log.info(_describe(state, args, is_loopback(args.host)))
    check_in_background(state, on_done=_log_stale)
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, access_log=args.access_log, log_level="warning")


def _enter_project(args: argparse.Namespace) -> dict[str, Path]:
    """Work in the run's folder (every output path is relative to it); the model folders as given or the pipeline's."""
    project = args.project.resolve()
    if not project.is_dir():
        raise UserError(f"--project {args.project} is not a folder. Point it at the pipeline's folder, where `dvc repro` ran.")
    if not (project / "params.yaml").is_file():
        raise UserError(f"--project {args.project} has no params.yaml: point it at the pipeline's folder (the one holding "
                        "dvc.yaml and params.yaml, where `dvc repro` ran).")
    os.chdir(project)
    # A relative --base-dir / --finetuned-dir is inside the project, like every output path.
    given = {"base": args.base_dir, "finetuned": args.finetuned_dir}
    return {name: path if path is not None else DEFAULT_MODELS[name] for name, path in given.items()}


def _describe(state, args: argparse.Namespace, loopback: bool) -> str:
    host = f"[{args.host}]" if ":" in args.host else args.host
    lines = [f"{state.project}: started in {state.startup_s:.1f}s"]
    if state.retrievers is not None:
        info = state.info
        lines.append(f"  search: {len(state.corpus.chunks)} chunks; base {info['models']['base']}, fine-tuned "
                     f"{info['models']['finetuned']}; {info['hardware']}, {info['threads']} thread(s) per question")
        lines.append(f"  prompts: query {info['prompts']['query']!r}, document {info['prompts']['document']!r}; hybrid: "
                     f"{info['fusion']}")
    lines.append(f"  known questions: {', '.join(f'{s.id} ({len(s.questions)})' for s in state.known.sets.values()) or 'none'}")
    for problem in state.problems + state.known.problems:
        lines.append(f"  {problem.kind.upper()}: {problem.message}")
    if not loopback:
        lines.append(f"  WARNING: listening on {args.host}, with no login: anyone who can reach this address can read the "
                     "corpus, the questions and the metrics, make this machine search, and write golden sets in the labelling "
                     "view (data/golden/). See docs/ui.md, Exposing it.")
    lines.append(f"  open http://{host}:{args.port}/  (the report: http://{host}:{args.port}/report, labelling: "
                 f"http://{host}:{args.port}/label)")
    return "\n".join(lines)


def _log_stale(stale) -> None:
    if not stale:
        log.info("the outputs match dvc.lock")
    for problem in stale:
        log.info("%s: %s", problem.kind.upper(), problem.message)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stages.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; there is no login)")
    parser.add_argument("--port", type=int, default=8090, help="port (default 8090)")
    parser.add_argument("--project", type=Path, default=Path("."),
                        help="the pipeline's folder whose run to show (default: the current folder)")
    parser.add_argument("--base-dir", type=Path,
                        help=f"the base model's folder (default {DEFAULT_MODELS['base']}; a relative path is inside --project)")
    parser.add_argument("--finetuned-dir", type=Path,
                        help=f"the fine-tuned model's folder (default {DEFAULT_MODELS['finetuned']}, the model the "
                             "evaluation measured; models/finetuned holds the same weights with its card; a relative "
                             "path is inside --project)")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="CPU threads per question (default 1: a question is a few tokens, and a second thread only "
                             "waits when another process holds the other core); corpus vectors missing from the "
                             "evaluation's cache are encoded with every core at start-up")
    parser.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False,
                        help="log one line per request (default off)")
    args = parser.parse_args()
    if not 0 < args.port < 65536:
        parser.error(f"--port must be 1..65535, got {args.port}")
    return args


if __name__ == "__main__":
    main()
