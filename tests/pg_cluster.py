"""A throw-away PostgreSQL cluster for the tests and the benchmarks: initdb, start, stop.

Nothing depends on a system service: the cluster lives in a temporary folder,
listens only on a unix socket inside it (no TCP port to collide with another
session's), and is stopped when the process that started it exits, however it
exits:

- ``stop()`` (the fixture's finaliser, the bench's ``finally``) and an
  ``atexit`` hook stop it with a fast shutdown and remove the folder;
- the server runs as a direct child with ``PR_SET_PDEATHSIG`` (Linux), so if
  the Python process is killed (SIGKILL, a crashed session) the kernel sends
  the postmaster SIGINT (its fast shutdown) and no server is left running.

PostgreSQL refuses to run as root. As root, the folder is handed to the
unprivileged ``nobody`` and the server's commands run as that user; otherwise
they run as the current user.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Where Debian's postgresql packages put the server binaries (newest version first).
BIN_PATTERN = "/usr/lib/postgresql/*/bin"
#: The user the server runs as when we are root.
UNPRIVILEGED_USER = "nobody"

_PR_SET_PDEATHSIG = 1


class ClusterError(RuntimeError):
    """The cluster could not be made or started; the message says why (and its log)."""


def server_bin_dir() -> Path:
    """The folder of ``initdb`` and ``postgres``: ``PG_BIN`` or the newest Debian version.

    Raises:
        ClusterError: no server binaries (install Debian's ``postgresql``).
    """
    given = os.environ.get("PG_BIN")
    candidates = [Path(given)] if given else []
    candidates += sorted(
        (Path(p) for p in glob.glob(BIN_PATTERN)),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise ClusterError(
        f"no PostgreSQL server binaries (initdb, postgres) in {BIN_PATTERN} or on PATH; "
        "install Debian's postgresql package (.ci/run does) or set PG_BIN"
    )


def _die_with_parent() -> None:
    """In the server's process, before exec: a fast shutdown when our process dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


class Cluster:
    """One PostgreSQL cluster in a temporary folder, reached by a unix socket.

    Args:
        settings: extra server settings (``-c name=value``), e.g. ``fsync=off``
            for a bulk load.
    """

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.bin = server_bin_dir()
        self.settings = {
            "listen_addresses": "",
            "max_connections": "100",
            "shared_buffers": "128MB",
            **(settings or {}),
        }
        self.root = Path(tempfile.mkdtemp(prefix="pgtest-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 5432  # only names the socket file: nothing listens on TCP
        self._process: subprocess.Popen[bytes] | None = None
        self._user: str | None = UNPRIVILEGED_USER if os.geteuid() == 0 else None
        if self._user is not None:
            import pwd

            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._group: int | None = entry.pw_gid
        else:
            self._group = None

    @property
    def socket_dir(self) -> Path:
        """The folder holding the server's socket (libpq's ``host``)."""
        return self.root

    def url(self, database: str = "postgres") -> str:
        """A libpq URL of ``database`` on this cluster (user ``postgres``, no password)."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            user=self._user,
            group=self._group,
            extra_groups=[] if self._user else None,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.root,
        )

    def start(self) -> Cluster:
        """Make the cluster (initdb) and start its server; returns self.

        Raises:
            ClusterError: initdb or the server failed (with their output).
        """
        made = self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        if made.returncode != 0:
            raise ClusterError(f"initdb failed: {made.stdout}{made.stderr}")
        self._launch()
        atexit.register(self.stop)
        self._wait_ready()
        return self

    def restart(self) -> None:
        """Stop the server (fast shutdown: every connection is cut) and start it again."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(30)
        self._launch()
        self._wait_ready()

    def _launch(self) -> None:
        options: list[str] = [
            "-D",
            str(self.data),
            "-k",
            str(self.socket_dir),
            "-p",
            str(self.port),
        ]
        for name, value in self.settings.items():
            options += ["-c", f"{name}={value}"]
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [str(self.bin / "postgres"), *options],
                user=self._user,
                group=self._group,
                extra_groups=[] if self._user else None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    def _wait_ready(self, timeout_s: float = 60.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise ClusterError(f"the server exited: {self.log.read_text(errors='replace')}")
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise ClusterError(
                        f"the server did not start: {self.log.read_text()}"
                    ) from None
                time.sleep(0.05)

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run one statement outside a transaction (CREATE DATABASE needs that)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql.encode())

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove the folder; idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)


class Databases:
    """Fresh databases on one cluster, each a copy of a template made once.

    ``CREATE DATABASE … TEMPLATE`` copies the template's files, which is much
    faster than running the migrations for every test.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._made = 0
        self._templates: set[str] = set()

    def _template(self, migrated: bool) -> str:
        name = "template_migrated" if migrated else "template_empty"
        if name not in self._templates:
            self.cluster.execute(f"CREATE DATABASE {name}")
            if migrated:
                from execution_history import upgrade_store

                upgrade_store(self.cluster.url(name))
            self._templates.add(name)
        return name

    def create(self, *, migrated: bool = True) -> str:
        """A new database (with this version's schema, or empty); its URL."""
        template = self._template(migrated)
        self._made += 1
        name = f"test_{os.getpid()}_{self._made}"
        self.cluster.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.cluster.url(name)

    def drop(self, url: str) -> None:
        """Drop the database of ``url`` (its connections are ended first)."""
        name = url.split("?", 1)[0].rsplit("/", 1)[1]
        self.cluster.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
