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
from execution_history import ExecutionRecord, ExecutionTracker, ItemType

#: Formats this section measures (when installed) and their typical-run targets in ms.
TARGETS_MS = {"json": 5.0, "xml": 20.0, "docx": 150.0, "pdf": 250.0}
REPEATS = {"typical": 7, "large": 3}


def _write_image(path: Path, seed: int, size: int = 1024) -> None:
    """A photo-like PNG: a colour gradient, shapes and some grain (not a flat test card)."""
    from PIL import Image, ImageDraw

    gradient = Image.linear_gradient("L").resize((size, size))
    noise = Image.effect_noise((size, size), 24)
    image = Image.merge("RGB", (gradient, noise, gradient.rotate(90 + seed)))
    draw = ImageDraw.Draw(image)
    draw.ellipse((size // 5, size // 5, size * 4 // 5, size * 4 // 5), fill=(240, 150, 40))
    image.save(path, format="PNG")


def _record(media_dir: Path, *, iterations: int, outputs: int) -> ExecutionRecord:
    """A Stille Post-shaped run recorded through the real tracker, with real images."""
    tracker = ExecutionTracker(
        "stillepost",
        safety_level="kids",
        user_id="bench-user",
        session_id="bench-session",
        media_dir=media_dir,
        software_version="0.1.0",
    )
    languages = ["de", "en", "fr", "es", "it", "pt", "nl", "sv"]
    with tracker:
        with tracker.stage(1):
            tracker.log_user_input("Ein Hund spielt im Garten unter einem Apfelbaum")
            tracker.log_translation(
                "A dog plays in the garden under an apple tree",
                from_lang="de",
                to_lang="en",
                model="translator",
                backend="local",
                duration_ms=12.0,
            )
            tracker.log_safety_check(passed=True, metadata={"matched_terms": []})
        with tracker.stage(2):
            for n in range(1, iterations + 1):
                with tracker.stage_iteration(n):
                    tracker.log_interception_iteration(
                        f"Iteration {n}: a dog plays in the garden under an apple tree, "
                        "the sun is shining and children are laughing nearby.",
                        from_lang=languages[(n - 1) % 8],
                        to_lang=languages[n % 8],
                        model="translator",
                        backend="local",
                        duration_ms=8.5,
                        metadata={"seed": 1234, "temperature": 0.7},
                    )
            tracker.log_interception_final("A dog plays in the garden")
        for loop in range(1, outputs + 1):
            with tracker.loop_iteration(loop):
                with tracker.stage(3):
                    tracker.log_safety_check(passed=True, metadata={"level": "kids"})
                with tracker.stage(4):
                    name = f"output_{loop}.png"
                    _write_image(media_dir / name, loop)
                    tracker.log_output(
                        ItemType.OUTPUT_IMAGE,
                        {"path": name, "mime_type": "image/png", "width": 1024, "height": 1024},
                        model="sdxl",
                        backend="local",
                        duration_ms=2400.0,
                        metadata={"seed": 1000 + loop, "steps": 25, "cfg": 7.0},
                    )
    return tracker.finalize()


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
            record = _record(media_dir, iterations=iterations, outputs=outputs)
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
