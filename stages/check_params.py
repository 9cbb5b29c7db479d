"""Stage ``check_params``: validate all of ``params.yaml`` before any other stage runs.

Every stage depends on this stage's output, so DVC runs it first; a bad value (`dvc exp run -S
train.batch_size=abc`) stops the run here, with the key, the value and what to write instead,
before DVC removes any other stage's outputs. The output's content never changes, so a param
change still reruns only the stages that read that param.
"""

from __future__ import annotations

from pathlib import Path

from stages.lib.common.errors import run_stage
from stages.lib.common.params import load_params

OUTPUT = Path("data/params_checked.txt")
STAMP = ("params.yaml passed validation (stages/check_params.py). Every stage depends on this file, so a bad\n"
         "value stops `dvc repro` before any stage's outputs are removed. Its content never changes.\n")


@run_stage("check_params")
def main() -> None:
    # 1. Validate (raises a UserError naming the key and value); 2. leave the constant stamp.
    load_params()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(STAMP, encoding="utf-8")


if __name__ == "__main__":
    main()
