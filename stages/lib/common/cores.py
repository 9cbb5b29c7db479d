"""CPU cores this process may use, and torch threads per training process.

Plumbing because more than one concern needs it: the PDF renderer sizes its process pool with it, training its threads.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_threads() -> int:
    """Threads for torch on the CPU: ``OMP_NUM_THREADS`` where it is set (at most the usable cores), else the usable
    cores shared between this machine's training processes.

    ``OMP_NUM_THREADS`` is how processes that run side by side share the cores, as DVC's queue runs experiments with
    ``dvc queue start -j 2``: two processes that each take every core spin against each other, and each runs several
    times slower than alone (``benchmarks/parallel_training.py``)."""
    requested = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()  # "4,2": nested levels; the first counts
    if requested.isdigit() and int(requested) > 0:
        return min(int(requested), usable_cores())
    return max(1, usable_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


