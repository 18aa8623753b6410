"""Running a probe script under real torchrun (2 CPU processes on gloo) from a test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from clipgen.engine.dist import free_port

TESTS = Path(__file__).parent


def torchrun(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", f"--master_port={free_port()}", *args]
    # the checkout's clipgen, not whichever one is installed: the probes run from tests/
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result
