"""Soak: a real server's resident memory over repeated batch exports, per format and variant."""
# mypy: disable-error-code="attr-defined,assignment,misc"
# (the variants patch the server's modules on purpose: see _serve_variant)

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import types
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RUNS = int(os.environ.get("BENCH_SOAK_RUNS", "300"))
#: Batches per format: the heavy formats get the full count, the light ones fewer
#: (they cost little memory and would stretch the bench on a 2-core machine).
BATCHES = int(os.environ.get("BENCH_SOAK_BATCHES", "25"))
LIGHT_BATCHES = int(os.environ.get("BENCH_SOAK_LIGHT_BATCHES", "10"))
#: At most this many batches for the "before" variant (its growth is linear; it is slow).
BEFORE_BATCHES = int(os.environ.get("BENCH_SOAK_BEFORE_BATCHES", "0")) or None
HEAVY = ("docx", "pdf", "qdpx", "rocrate")
FORMATS = tuple(
    os.environ.get("BENCH_SOAK_FORMATS", "docx,pdf,qdpx,rocrate,json,xml,qdc,csv,xlsx").split(",")
)
TARGET_MIB = 50.0
SETTLE_S = 1.0
TOKEN = "soak-bench-research-token-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[1]

#: Server variants, each a set of environment variables for a fresh ``devserver serve``
#: (``SOAK_*`` ones are read by this bench's launcher, ``_serve_variant``). "before" is
#: the earlier behaviour (each export on whichever request thread took the request);
#: "shipped" is the default; the others are the candidates measured on the way.
_BEFORE = {"DEVSERVER_EXPORT_THREADS": "0", "SOAK_PATCH": "dynamic-mmap"}
VARIANTS: dict[str, dict[str, str]] = {
    "before": _BEFORE,
    "shipped": {},
    "shipped with dynamic mmap threshold": {"SOAK_PATCH": "dynamic-mmap"},
    "shipped without gc before trim": {"SOAK_PATCH": "no-gc"},
    "export thread only": {"SOAK_PATCH": "dynamic-mmap,no-trim"},
    "before + trim": {**_BEFORE, "SOAK_PATCH": "dynamic-mmap,trim-inline"},
    "before + fixed thresholds": {"DEVSERVER_EXPORT_THREADS": "0"},
    "before + MALLOC_ARENA_MAX=2": {**_BEFORE, "MALLOC_ARENA_MAX": "2"},
    "before + 8 request threads": {**_BEFORE, "SOAK_THREADS": "8"},
}
SHOWN = tuple(os.environ.get("BENCH_SOAK_VARIANTS", "before,shipped").split(","))

NOTES = f"""\
A real `devserver serve` process on 127.0.0.1 (its default request threads, a
temporary data dir) holds {RUNS} `stillepost` runs of the `local` backend, made
through `POST /api/runs?wait=true` (each with its 512×512 image). For each format
and server variant a fresh server is started on that data dir, and
`GET /api/exports?format=…` of all {RUNS} runs is downloaded whole with the
research token, one batch after another; {SETTLE_S:g} s after each batch the
server's resident memory is read from `/proc/<pid>/status` (VmRSS). Growth is RSS
after the last batch minus RSS after the first; target: ≤ {TARGET_MIB:g} MiB.
"before" is the server as it was (each export on whichever request thread took the
request, glibc's dynamic mmap threshold); "shipped" is the default (exports on the
export thread, cycles collected and free memory trimmed after each, the mmap
threshold fixed at server start). The last columns say where the memory is after
the last batch: resident MiB of glibc's per-thread arena heaps, of the main heap,
of other anonymous mappings (Python's own arenas, thread stacks), the number of
malloc arenas, the free space they hold (address space, not all resident) and
Python's live blocks (after a collection). The batch counts are in the table:
{BATCHES} per heavy format unless the run said otherwise (`BENCH_SOAK_BATCHES_PDF`,
`BENCH_SOAK_BEFORE_BATCHES`), {LIGHT_BATCHES} for the light ones. Reproduce:
`python -m bench soak` (environment: `BENCH_SOAK_RUNS`, `BENCH_SOAK_BATCHES`,
`BENCH_SOAK_LIGHT_BATCHES`, `BENCH_SOAK_BATCHES_<FORMAT>`, `BENCH_SOAK_BEFORE_BATCHES`,
`BENCH_SOAK_FORMATS`, `BENCH_SOAK_VARIANTS`).
"""


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """A memory field of ``/proc/<pid>/status`` in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


#: glibc reserves each thread arena's heap as 64 MiB aligned to 64 MiB (HEAP_MAX_SIZE).
_ARENA_ALIGN = 64 << 20


def memory_map(pid: int) -> dict[str, float]:
    """Resident MiB of ``pid`` by kind of mapping, from ``/proc/<pid>/smaps``.

    ``thread arenas`` are anonymous mappings that start on a 64 MiB boundary
    (glibc's per-thread malloc heaps); ``main heap`` is the brk heap (the main
    arena); ``other anonymous`` holds Python's own 256 KiB arenas, blocks that
    malloc mapped on their own, and thread stacks.
    """
    kinds = {"thread arenas": 0.0, "main heap": 0.0, "other anonymous": 0.0, "files": 0.0}
    kind = "files"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=6)
        if "-" in head[0] and not head[0].endswith(":"):
            start = int(head[0].split("-")[0], 16)
            path = head[5] if len(head) > 5 else ""
            if path == "[heap]":
                kind = "main heap"
            elif path:
                kind = "files"
            else:
                kind = "thread arenas" if start % _ARENA_ALIGN == 0 else "other anonymous"
        elif head[0] == "Rss:":
            kinds[kind] += int(head[1]) / 1024
    return kinds


def malloc_report(server: Server, timeout_s: float = 10.0) -> dict[str, float]:
    """Ask the server for its memory report; Python blocks, arenas, their system and in-use MiB."""
    log = Path(server.log.name)
    seen = log.read_text(errors="replace").count(f"{MARK} end")
    os.kill(server.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout_s
    while (text := log.read_text(errors="replace")).count(f"{MARK} end") == seen:
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.1)
    report = text.rsplit(f"{MARK} begin", 1)[1].split(f"{MARK} end", 1)[0]
    figures: dict[str, float] = {"arenas": 0, "arena system MiB": 0.0, "arena in use MiB": 0.0}
    arena = False
    for line in report.splitlines():
        if line.startswith("python blocks"):
            figures["python blocks"] = int(line.split("=")[1])
        elif line.startswith("Arena "):
            arena = True
            figures["arenas"] += 1
        elif line.startswith("Total"):
            arena = False
        elif arena and line.startswith("system bytes"):
            figures["arena system MiB"] += int(line.split("=")[1]) / 2**20
        elif arena and line.startswith("in use bytes"):
            figures["arena in use MiB"] += int(line.split("=")[1]) / 2**20
    return figures


class Server:
    """``devserver serve`` in a child process on a free port of 127.0.0.1."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        extra = dict(env)
        threads = extra.pop("SOAK_THREADS", None)
        command = [sys.executable, "-m", "bench.soak_bench", "--serve"]
        command += ["--host", "127.0.0.1", "--port", "0"]
        if threads:
            command += ["--threads", threads]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        environ.update(DEVSERVER_DATA_DIR=str(data_dir), DEVSERVER_RESEARCH_TOKEN=TOKEN, **extra)
        self.log = (data_dir / "server.log").open("ab")
        # cwd is the checkout, so `-c` imports this tree's devserver.
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on http://" not in line:
            self.close()
            raise RuntimeError(f"the server did not start: {line!r}; see {self.log.name}")
        self.port = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
        self.pid = self.process.pid

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.communicate(timeout=120)
        self.log.close()


@contextmanager
def serving(data_dir: Path, env: dict[str, str]) -> Iterator[Server]:
    server = Server(data_dir, env)
    try:
        yield server
    finally:
        server.close()


def make_runs(server: Server, count: int) -> None:
    """``count`` finished runs through the API (4 clients; each waits for its run)."""
    body = json.dumps({"config": "stillepost", "input": "Ein Hund spielt im Garten"})

    def post(n: int) -> None:
        conn = server.connection()
        headers = {"Content-Type": "application/json"}
        conn.request("POST", "/api/runs?wait=true", body=body, headers=headers)
        answer = conn.getresponse()
        data = answer.read()
        conn.close()
        if answer.status != 200:
            raise RuntimeError(f"run {n}: HTTP {answer.status}: {data[:200]!r}")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(post, range(count)))


def batch(server: Server, name: str, into: Path) -> tuple[int, float]:
    """Download one batch export whole into ``into``; (bytes, seconds). Checks its manifest."""
    conn = server.connection()
    began = time.perf_counter()
    conn.request("GET", f"/api/exports?format={name}", headers={"Authorization": f"Bearer {TOKEN}"})
    answer = conn.getresponse()
    size = 0
    with into.open("wb") as out:
        while chunk := answer.read(1 << 20):
            size += len(chunk)
            out.write(chunk)
    seconds = time.perf_counter() - began
    conn.close()
    if answer.status != 200:
        raise RuntimeError(f"{name}: HTTP {answer.status}: {into.read_bytes()[:200]!r}")
    with zipfile.ZipFile(into) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    if manifest["runs"] != RUNS or manifest["failed_runs"]:
        raise RuntimeError(f"{name}: {manifest['runs']} runs, failed {manifest['failed_runs']}")
    return size, seconds


def soak(data_dir: Path, name: str, variant: str, batches: int) -> dict[str, Any]:
    """One fresh server, ``batches`` exports of ``name``; the RSS after each."""
    with serving(data_dir, VARIANTS[variant]) as server:
        started = rss_mib(server.pid)
        threads = _threads(server.pid)
        after: list[float] = []
        seconds: list[float] = []
        size = 0
        for _ in range(batches):
            size, took = batch(server, name, data_dir / "download.zip")
            seconds.append(took)
            # The client has the last byte before the server has finished tidying up
            # (closing the export, releasing memory): read RSS once the server is idle.
            time.sleep(SETTLE_S)
            after.append(rss_mib(server.pid))
        print(f"   {name:8} {variant:28} " + " ".join(f"{v:.0f}" for v in after), flush=True)
        mapped = memory_map(server.pid)
        report = malloc_report(server)
        print(f"   {name:8} {variant:28} " + repr({**mapped, **report}), flush=True)
    growth = after[-1] - after[0]
    return {
        "format": name,
        "variant": variant,
        "batches": batches,
        "threads": threads,
        "RSS at start MiB": round(started),
        "after 1st MiB": round(after[0]),
        "after last MiB": round(after[-1]),
        "peak MiB": round(max(after)),
        "growth MiB": round(growth, 1),
        "target met": "yes" if growth <= TARGET_MIB else "NO",
        "s per batch": round(sum(seconds) / len(seconds), 1),
        "ZIP MiB": round(size / 2**20, 1),
        # where the memory is after the last batch (see memory_map and malloc_report)
        "thread arenas MiB": round(mapped["thread arenas"]),
        "main heap MiB": round(mapped["main heap"]),
        "other anon MiB": round(mapped["other anonymous"]),
        "arenas": report.get("arenas", ""),
        "free in arenas MiB": round(
            report.get("arena system MiB", 0) - report.get("arena in use MiB", 0)
        )
        if report
        else "",
        "Python blocks k": round(report["python blocks"] / 1000)
        if "python blocks" in report
        else "",
    }


def batch_count(name: str, variant: str) -> int:
    """How many batches of ``name`` (``BENCH_SOAK_BATCHES_<FORMAT>`` overrides the default)."""
    count = BATCHES if name in HEAVY else LIGHT_BATCHES
    count = int(os.environ.get(f"BENCH_SOAK_BATCHES_{name.upper()}", count))
    if variant == "before" and BEFORE_BATCHES:
        count = min(count, BEFORE_BATCHES)
    return count


def run() -> list[dict[str, Any]]:
    """Soak every format in every shown variant, side by side (variants alternate per format).

    Returns:
        One row per format and variant: RSS after the first and the last batch, growth.
    """
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="soak-bench-") as folder:
        data_dir = Path(folder)
        with serving(data_dir, {}) as server:
            began = time.perf_counter()
            make_runs(server, RUNS)
            print(f"   {RUNS} runs made in {time.perf_counter() - began:.0f} s", flush=True)
        for index, name in enumerate(FORMATS):
            # alternate which variant goes first, so drift on a shared machine hits both
            order = SHOWN if index % 2 == 0 else SHOWN[::-1]
            measured = {v: soak(data_dir, name, v, batch_count(name, v)) for v in order}
            rows.extend(measured[v] for v in SHOWN)
    return rows


MARK = "soak-bench memory report"


def _report_memory(signum: int, frame: object) -> None:
    """Child process, on SIGUSR1: Python's live blocks and glibc's per-arena figures on stderr."""
    import ctypes
    import gc

    gc.collect()
    sys.stderr.write(f"{MARK} begin\npython blocks = {sys.getallocatedblocks()}\n")
    sys.stderr.flush()
    try:
        libc = ctypes.CDLL("libc.so.6")
        if os.environ.get("SOAK_TRIM_BEFORE_REPORT"):  # diagnosis: is the rest free memory?
            libc.malloc_trim(0)
        libc.malloc_stats()  # glibc: per arena, to stderr
    except (OSError, AttributeError):
        pass
    sys.stderr.write(f"{MARK} end\n")
    sys.stderr.flush()


def _serve_variant(argv: list[str]) -> None:
    """Child process: ``devserver serve`` with the variant's patch (``SOAK_PATCH``) applied."""
    signal.signal(signal.SIGUSR1, _report_memory)
    patches = set(filter(None, os.environ.get("SOAK_PATCH", "").split(",")))
    import devserver._export_pool
    import devserver.cli._serve

    if "dynamic-mmap" in patches:  # glibc's default: the threshold rises after a large free
        devserver.cli._serve.fix_mmap_threshold = lambda: False
    if "no-trim" in patches:  # no malloc_trim after a batch on the export thread
        devserver._export_pool.release_free_memory = lambda: False
    if "no-gc" in patches:  # malloc_trim without collecting reference cycles first
        # only the export pool's collection: the memory report still collects
        devserver._export_pool.gc = types.SimpleNamespace(collect=lambda: 0)
    if "trim-inline" in patches:  # malloc_trim after each batch, on the request thread
        import devserver.api._research
        from devserver._malloc import release_free_memory

        original = devserver.api._research.stream_batch

        def trimmed(*args: Any, **kwargs: Any) -> Iterator[bytes]:
            chunks = original(*args, **kwargs)

            def relay() -> Iterator[bytes]:
                try:
                    yield from chunks  # an exhausted generator has freed its frame
                finally:
                    release_free_memory()

            return relay()

        devserver.api._research.stream_batch = trimmed
    unknown = patches - {"dynamic-mmap", "no-trim", "no-gc", "trim-inline"}
    if unknown:
        raise SystemExit(f"unknown SOAK_PATCH {unknown}")
    from devserver.cli import main

    main(["serve", *argv])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        _serve_variant(sys.argv[2:])
        sys.exit(0)
    for row in run():
        print(row)
