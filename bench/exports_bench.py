"""Benchmark of the exporters: median time and peak memory per format, typical and large run."""

from __future__ import annotations

import gc
import io
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import exports
from execution_history import ExecutionRecord

from ._runs import stille_post_record

#: Formats this section measures (when installed) and their typical-run targets in ms.
TARGETS_MS = {"json": 5.0, "xml": 20.0, "docx": 150.0, "pdf": 250.0}
REPEATS = {"typical": 7, "large": 3}


def _time_ms(action: Callable[[], Any], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        action()
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def _peak_mib(action: Callable[[], Any]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / (1024 * 1024)


def run() -> list[dict[str, Any]]:
    """Measure every installed document format on a typical and a large run.

    Each format is exported once first, so imports, font registration and the
    XSD load (once per process) are not counted; then the median of a few
    exports is taken, and one more export under tracemalloc gives peak memory.

    Returns:
        One row per format and case: ``format``, ``case``, ``items``, ``images``,
        ``median_ms``, ``peak_mib``, ``bytes``, ``target_ms`` (typical case only; else None).
    """
    rows: list[dict[str, Any]] = []
    installed = {info.name for info in exports.formats() if info.available}
    with tempfile.TemporaryDirectory(prefix="exports-bench-") as tmp:
        cases = {
            # 10 iterations, 3 outputs, transitions and start/end: 31 items, 3 images
            "typical": (Path(tmp) / "typical", 10, 3),
            # ≈ 1,000 items, 40 images
            "large": (Path(tmp) / "large", 870, 40),
        }
        for case, (media_dir, iterations, outputs) in cases.items():
            media_dir.mkdir()
            record = stille_post_record(media_dir, iterations=iterations, outputs=outputs)
            for fmt in TARGETS_MS:
                if fmt not in installed:
                    continue

                def export_once(
                    fmt: str = fmt, media: Path = media_dir, run: ExecutionRecord = record
                ) -> bytes:
                    stream = io.BytesIO()
                    exports.export(run, fmt, stream, media_dir=media)
                    return stream.getvalue()

                size = len(export_once())  # warm-up: imports, fonts, schema
                rows.append(
                    {
                        "format": fmt,
                        "case": case,
                        "items": len(record.items),
                        "images": outputs,
                        "median_ms": round(_time_ms(export_once, REPEATS[case]), 2),
                        "peak_mib": round(_peak_mib(export_once), 2),
                        "bytes": size,
                        "target_ms": TARGETS_MS[fmt] if case == "typical" else None,
                    }
                )
    return rows


if __name__ == "__main__":  # python -m bench.exports_bench
    for row in run():
        print(row)
