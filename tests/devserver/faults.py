"""Real faults for the fault matrix: a ``devserver serve`` process, tmpfs and read-only mounts.

Everything here acts on the real kernel: a 20 MB tmpfs that fills up, read-only
bind mounts (of one file or a whole folder), ``kill -9``, SIGTERM. Mounting
needs root (CI runs as root); ``need_root`` skips a case elsewhere, with the
reason. Every mount is undone by the context manager that made it, even when
the test fails.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

#: A research token of the required length (never a real secret).
TOKEN = "fault-matrix-research-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# ----------------------------------------------------------------------- mounts


def need_root() -> None:
    """Skip the calling test when it cannot mount (only root can; CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root for mount (tmpfs / read-only bind mounts); CI runs as root")


def _run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()}")


def _umount(path: Path) -> None:
    """Unmount ``path``; lazily when it is still busy, so a failed test never leaves a mount."""
    result = subprocess.run(["umount", str(path)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def is_mount_point(path: Path) -> bool:
    """Whether ``path`` is mounted on (read from /proc/self/mountinfo)."""
    target = str(path.resolve())
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return any(line.split()[4] == target for line in handle)


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "20m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (made when missing)."""
    path.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path))
    try:
        yield path
    finally:
        _umount(path)


@contextlib.contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """Each of ``paths`` (a file or a folder) bind-mounted read-only onto itself."""
    mounted: list[Path] = []
    try:
        for path in paths:
            _run("mount", "--bind", str(path), str(path))
            mounted.append(path)
            _run("mount", "-o", "remount,bind,ro", str(path))
        yield
    finally:
        for path in reversed(mounted):
            _umount(path)


def fill(folder: Path, name: str = "filler") -> Path:
    """Write a file into ``folder`` until its file system is full (ENOSPC); returns it."""
    path = folder / name
    block = b"\0" * (1 << 16)
    with path.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(block)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    # The last partial page: single bytes, until not one more fits.
    with path.open("ab", buffering=0) as handle:
        with contextlib.suppress(OSError):
            for _ in range(1 << 16):
                handle.write(b"\0")
    return path


# ------------------------------------------------------------------------- HTTP


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> tuple[int, bytes]:
    """One request on its own connection: status and body.

    ``body`` is sent as JSON; ``raw`` as it is (JSON text the ``json`` module
    would not write, such as lone-surrogate escapes).
    """
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=timeout)
    try:
        payload = (
            raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        )
        sent = dict(headers or {})
        if payload is not None:
            sent["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=sent)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def call_json(base: str, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    """``call`` with the answer decoded as JSON (the API answers JSON, errors included)."""
    status, data = call(base, method, path, body, **kw)
    return status, json.loads(data)


# ----------------------------------------------------------------------- server

#: The checkout whose code the tests run (the folder holding ``devserver/``).
_CHECKOUT = Path(__file__).resolve().parents[2]


def server_env(
    data_dir: Path, tmp_dir: Path, *, pseudonym_key: bool = True, **extra: str
) -> dict[str, str]:
    """The environment of a served process or a command: this data dir, TMPDIR in the test.

    Args:
        pseudonym_key: give the key (True), or let the first start generate it
            into the data dir, as a deployment without the variable does.
        extra: further variables.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DEVSERVER_") and k not in ("OLLAMA_HOST", "TMPDIR")
    }
    tmp_dir.mkdir(parents=True, exist_ok=True)
    env.update(
        DEVSERVER_DATA_DIR=str(data_dir),
        DEVSERVER_RESEARCH_TOKEN=TOKEN,
        # Last-resort copies (``$TMPDIR/devserver-unwritten``) stay inside the test's folder.
        TMPDIR=str(tmp_dir),
        PYTHONUNBUFFERED="1",
        # The console script imports the package from wherever it was installed (another
        # checkout, for a shared virtualenv): the checkout under test must come first.
        PYTHONPATH=os.pathsep.join(
            p for p in (str(_CHECKOUT), os.environ.get("PYTHONPATH", "")) if p
        ),
    )
    if pseudonym_key:
        env["DEVSERVER_PSEUDONYM_KEY"] = "fault-matrix-pseudonym-key-0123456789"
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """One ``devserver`` command (stdout and stderr apart, as text)."""
    script = Path(sys.executable).with_name("devserver")
    return subprocess.run(
        [str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        check=False,
    )


class ServerDidNotStart(AssertionError):
    """The process ended (or hung) before it listened; ``output`` says why."""

    def __init__(self, returncode: int | None, output: str) -> None:
        super().__init__(f"the server did not start (exit code {returncode}):\n{output}")
        self.returncode = returncode
        self.output = output


class Served:
    """A real ``devserver serve --port 0`` process; its output is collected by a thread.

    The output must be read while the process runs: a full pipe would block
    the server's logging, which is itself a fault (and not the one under test).
    """

    def __init__(
        self, env: dict[str, str], cwd: Path | None = None, args: tuple[str, ...] = ()
    ) -> None:
        script = Path(sys.executable).with_name("devserver")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [str(script), "serve", "--port", "0", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self.lines: list[str] = []
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.base = ""
        listening = self._listening.wait(30) and [
            line for line in self.lines if line.startswith("devserver listening on ")
        ]
        if not listening:
            self.kill()
            raise ServerDidNotStart(self.process.returncode, self.output)
        self.base = listening[0].split()[-1].rstrip("/")

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:  # closed at the end of the output (the process ended)
            for line in self.process.stdout:
                self.lines.append(line)
                if line.startswith("devserver listening on "):
                    self._listening.set()
        self._listening.set()  # ended without listening: the waiter sees no line

    @property
    def output(self) -> str:
        """Everything the process printed so far (stdout and stderr)."""
        return "".join(self.lines)

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        """``call_json`` against this server."""
        return call_json(self.base, method, path, body, **kw)

    def post_run(
        self, body: dict[str, Any] | None = None, *, raw: bytes | None = None, wait: bool = False
    ) -> tuple[int, Any]:
        """``POST /api/runs`` (``?wait=true`` when ``wait``)."""
        path = "/api/runs?wait=true" if wait else "/api/runs"
        return self.call("POST", path, body, raw=raw)

    def record(self, run_id: str) -> tuple[int, Any]:
        """``GET /api/runs/<run_id>``."""
        return self.call("GET", f"/api/runs/{run_id}")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then wait for the exit; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.kill()
        self._reader.join(10)
        return code

    def kill(self) -> None:
        """``kill -9``: the process dies at once, whatever it was doing."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self._reader.join(10)

    def stopped_line(self) -> str:
        """The ``Stopped: …`` line of a process that shut down."""
        lines = [line for line in self.lines if line.startswith("Stopped: ")]
        assert len(lines) == 1, self.output
        return lines[0].strip()

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.kill()


def wait_until(check: Any, timeout: float, message: str, interval: float = 0.05) -> Any:
    """Poll ``check()`` until it returns something true; fail with ``message`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(interval)


# --------------------------------------------------------------------- readers


#: How a run can end (``incomplete``: recovered after its process died).
ENDED = frozenset({"success", "partial", "no_output", "blocked", "error", "incomplete"})


def health(served: Served) -> dict[str, Any] | None:
    """``GET /api/health``, or None while the route does not exist (it is being added)."""
    status, data = call(served.base, "GET", "/api/health")
    if status == 404:
        return None
    assert status in (200, 503), data
    answer: dict[str, Any] = json.loads(data)
    return answer


def wait_for_end(served: Served, run_id: str, timeout: float = 60) -> dict[str, Any]:
    """The record of ``run_id`` (read by its link) once the run has ended and been handed on."""

    def ended() -> dict[str, Any] | None:
        status, record = served.record(run_id)
        assert status == 200, (run_id, record)
        outcome = [s for s in record["integrity"]["sinks"] if s["name"] == "store"]
        return record if record["status"] != "running" and outcome else None

    result: dict[str, Any] = wait_until(ended, timeout, f"run {run_id} did not end")
    return result


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, dict keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def encodable(value: Any) -> bool:
    """Whether every string in ``value`` can be written as UTF-8 (no lone surrogate)."""
    try:
        for text in strings(value):
            text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
