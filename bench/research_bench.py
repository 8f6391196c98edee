"""Benchmark of the research formats: time and peak memory, one typical run and 1,000 runs.

The typical run is Stille Post-shaped (8 iterations, 3 outputs with 1024×1024
photo-like images, about 30 items). The batch is 1,000 such runs with small
images, written to a file (the output's bytes are not counted as memory). Each
batch runs in a fresh process and reports two memory figures: the growth of
the process's peak resident set while exporting (so memory that C libraries
such as libxml2 and zlib allocate counts too) and the peak of Python
allocations under tracemalloc (a second pass). Target: both ≤ 100 MB.
"""

from __future__ import annotations

import gc
import io
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from ._runs import stille_post_record, write_photo

FORMATS = ("qdpx", "qdc", "csv", "xlsx", "rocrate")
BATCH_RUNS = 1_000
BATCH_TARGET_MB = 100.0
TYPICAL_REPEATS = 5

NOTES = (
    "Typical run: 8 Stille Post iterations, 3 outputs with 1024×1024 images (median of"
    f" {TYPICAL_REPEATS}; peak = Python allocations during one export). Batch: {BATCH_RUNS:,}"
    " runs with 64×64 images streamed to a file in a fresh process; peak = Python allocations"
    " (tracemalloc, second pass), RSS growth = rise of the process's peak resident set while"
    f" exporting (C libraries included); target: both ≤ {BATCH_TARGET_MB:.0f} MB.\n"
)


def _record(media_dir: Path, index: int, *, image_size: int, write_media: bool) -> Any:
    from execution_history import Pseudonymiser

    record = stille_post_record(
        media_dir, person=index, image_size=image_size, write_media=write_media
    )
    return record.pseudonymised(Pseudonymiser("bench-pseudonym-key-0123456789"))


def _typical(name: str, record: Any, media_dir: Path) -> dict[str, Any]:
    import exports

    def once() -> int:
        stream = io.BytesIO()
        exports.export(record, name, stream, media_dir=media_dir)
        return len(stream.getvalue())

    size = once()  # warm-up: imports, schema and font loading happen once per process
    times = []
    for _ in range(TYPICAL_REPEATS):
        gc.collect()
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    gc.collect()
    tracemalloc.start()
    once()
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "format": name,
        "case": "typical run",
        "seconds": round(statistics.median(times), 4),
        "peak MiB": round(peak / 2**20, 1),
        "RSS growth MiB": "",
        "output MiB": round(size / 2**20, 2),
        "target met": "",
    }


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _batch(name: str) -> dict[str, Any]:
    """One format's 1,000-run batch, measured in this (fresh) process."""
    import exports

    with tempfile.TemporaryDirectory() as folder:
        media_dir = Path(folder) / "media"
        for loop in (1, 2, 3):
            write_photo(media_dir / f"output_{loop}.png", loop, 64)
        records = [
            _record(media_dir, i, image_size=64, write_media=False) for i in range(BATCH_RUNS)
        ]

        def pairs() -> Iterator[tuple[Any, Path]]:
            for record in records:
                yield record, media_dir

        # warm up imports and caches with one run, so the batch measures the export
        exports.export_batch([(records[0], media_dir)], name, io.BytesIO())
        gc.collect()
        # Reset the peak (Linux: writing 5 to clear_refs resets VmHWM) where allowed.
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        before = _rss_kib("VmRSS")
        out = Path(folder) / f"batch.{name}"
        start = time.perf_counter()
        with out.open("wb") as stream:
            exports.export_batch(pairs(), name, stream)
        seconds = time.perf_counter() - start
        rss_growth = max(0, _rss_kib("VmHWM") - before) * 1024
        size = out.stat().st_size
        # A second pass under tracemalloc: RSS can hide Python allocations that reuse
        # memory freed after building the records; tracemalloc sees every one of them.
        gc.collect()
        tracemalloc.start()
        with out.open("wb") as stream:
            exports.export_batch(pairs(), name, stream)
        _current, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    growth = max(rss_growth, traced_peak)
    return {
        "format": name,
        "case": f"batch of {BATCH_RUNS:,} runs",
        "seconds": round(seconds, 2),
        "peak MiB": round(traced_peak / 2**20, 1),
        "RSS growth MiB": round(rss_growth / 2**20, 1),
        "output MiB": round(size / 2**20, 1),
        "target met": "yes" if growth / 1e6 <= BATCH_TARGET_MB else "NO",
    }


def run() -> list[dict[str, Any]]:
    """Measure every research format: one typical run, then a 1,000-run batch each.

    Returns:
        Rows with format, case, seconds, peak MiB, output MiB and whether the batch
        memory target is met.
    """
    import exports

    available = {info.name for info in exports.formats() if info.available}
    names = [name for name in FORMATS if name in available]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        media_dir = Path(folder) / "media"
        record = _record(media_dir, 0, image_size=1024, write_media=True)
        for name in names:
            rows.append(_typical(name, record, media_dir))
    # one fresh process per batch: peak RSS is per process and must start clean
    context = get_context("spawn")
    for name in names:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            rows.append(pool.submit(_batch, name).result())
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
