"""Logging as the stages use it: ``[stage] message`` on stdout, rank 0 only, also from a module run with ``python -m``."""

from __future__ import annotations

import sys
import textwrap

from tests.helpers import REPO_ROOT, run

# A command shaped like a stage: its own module logs under __name__ ("__main__" under python -m), a library
# module under its package name, both through run_stage's setup.
COMMAND = textwrap.dedent("""
    import logging

    from stages.lib.common.errors import run_stage

    log = logging.getLogger(__name__)


    @run_stage("demo")
    def main() -> None:
        log.info("from the stage module")
        logging.getLogger("stages.lib.demo").info("from the library")
        logging.getLogger("stages.lib.demo").debug("not at info level")


    if __name__ == "__main__":
        main()
""")


def _run_command(tmp_path, extra_env=None):
    (tmp_path / "demo_stage.py").write_text(COMMAND, encoding="utf-8")
    return run([sys.executable, "-m", "demo_stage"], tmp_path,
               extra_env={"PYTHONPATH": f"{tmp_path}:{REPO_ROOT}", **(extra_env or {})})


def test_a_stage_run_with_python_m_speaks_on_stdout_with_its_name(tmp_path):
    result = _run_command(tmp_path)
    lines = result.stdout.splitlines()
    assert lines[:2] == ["[demo] from the stage module", "[demo] from the library"], result.stdout + result.stderr
    assert "not at info level" not in result.stdout + result.stderr
    assert "from the" not in result.stderr  # on stdout only, once


def test_only_rank_zero_speaks_under_torchrun(tmp_path):
    result = _run_command(tmp_path, {"RANK": "1", "LOCAL_RANK": "1"})
    assert "from the" not in result.stdout + result.stderr
