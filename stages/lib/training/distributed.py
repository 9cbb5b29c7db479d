"""Data-parallel training through PyTorch's own launcher (``torchrun``).

The stage relaunches itself as N worker processes; inside a worker, the
transformers Trainer reads the launcher's environment (RANK, WORLD_SIZE, ...)
and sets up DistributedDataParallel.
"""

from __future__ import annotations

import os
import subprocess
import sys

from stages.lib.common.cores import usable_cores


def is_launched_worker() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def launch_workers(module: str, processes: int) -> int:
    """Run ``python -m module`` as ``processes`` workers on this machine; return torchrun's exit code."""
    env = dict(os.environ)
    # Share the cores between the workers instead of oversubscribing them (torchrun would pick 1).
    env.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // processes)))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", "-m", module,
    ]
    return subprocess.run(command, env=env).returncode
