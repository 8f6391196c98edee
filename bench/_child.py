"""A benchmark's helper process: its own interpreter (and interpreter lock), reached by URL."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class ChildProcess:
    """``python -m <module> <args>`` from the checkout; the first line it prints is its URL.

    Raises:
        RuntimeError: the child printed something else first (it did not start).
    """

    def __init__(self, module: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            raise RuntimeError(f"bench child {module} did not start: {self.url!r}")

    def close(self) -> None:
        """SIGTERM, then wait for it to finish."""
        self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=120)
