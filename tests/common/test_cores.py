"""Threads for torch: OMP_NUM_THREADS where a user shares the machine between processes, else the usable cores
split between this machine's training processes."""

from __future__ import annotations

import pytest

from stages.lib.common import cores


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(cores, "usable_cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    return monkeypatch


def test_without_a_request_every_usable_core_shared_between_the_training_processes(four_cores):
    assert cores.cpu_threads() == 4
    four_cores.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun's two workers on this machine
    assert cores.cpu_threads() == 2
    four_cores.setenv("LOCAL_WORLD_SIZE", "8")
    assert cores.cpu_threads() == 1


@pytest.mark.parametrize(("requested", "threads"), [
    ("1", 1),     # `OMP_NUM_THREADS=1 dvc queue start -j 4`: one core each
    ("2", 2),
    ("16", 4),    # never more than the cores this process may use
    ("3,1", 3),   # nested levels: the outer one
    (" 2 ", 2),
])
def test_omp_num_threads_is_honoured(four_cores, requested, threads):
    four_cores.setenv("OMP_NUM_THREADS", requested)
    four_cores.setenv("LOCAL_WORLD_SIZE", "2")  # a value torchrun's workers were given is theirs already: not split again
    assert cores.cpu_threads() == threads


@pytest.mark.parametrize("requested", ["", "0", "-2", "all", "2.5"])
def test_a_value_that_is_no_thread_count_falls_back_to_the_cores(four_cores, requested):
    four_cores.setenv("OMP_NUM_THREADS", requested)
    assert cores.cpu_threads() == 4
