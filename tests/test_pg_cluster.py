"""The tests' throw-away PostgreSQL cluster leaves nothing running, even when Python is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.pg_cluster import Cluster

_START_AND_WAIT = """
import sys, time
from tests.pg_cluster import Cluster
cluster = Cluster().start()
print(cluster._process.pid, cluster.root, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (not yet reaped by init) is dead too
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def _wait_gone(pid: int, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_stop_ends_the_server_and_removes_its_folder() -> None:
    cluster = Cluster().start()
    assert cluster._process is not None
    pid, root = cluster._process.pid, cluster.root
    cluster.execute("CREATE DATABASE probe")
    cluster.stop()
    assert _wait_gone(pid) and not root.exists()
    cluster.stop()  # idempotent


def test_a_killed_python_process_leaves_no_server_running() -> None:
    """SIGKILL runs no atexit hook: the parent-death signal stops the postmaster."""
    child = subprocess.Popen(
        [sys.executable, "-c", _START_AND_WAIT],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert child.stdout is not None
    with child.stdout:
        pid_text, root = child.stdout.readline().split()
    server = int(pid_text)
    assert _alive(server)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    try:
        assert _wait_gone(server), "the postmaster outlived the killed test process"
    finally:
        if _alive(server):
            os.kill(server, signal.SIGKILL)
        subprocess.run(["rm", "-rf", root], check=False)
