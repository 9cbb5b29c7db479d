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
    """Threads for torch on the CPU: the usable cores, shared between this machine's training processes."""
    return max(1, usable_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


