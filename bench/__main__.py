"""Run every benchmark section side by side and write docs/performance.md."""

from __future__ import annotations

import datetime as dt
import importlib
import os
import platform
import sys
import traceback
from pathlib import Path
from typing import Any

SECTIONS = [
    ("Tracker core", "bench.core_bench"),
    ("Exporters", "bench.exports_bench"),
    ("Research formats", "bench.research_bench"),
    ("Devserver end to end", "bench.devserver_bench"),
    ("OTLP sink", "bench.otel_bench"),
    ("Research API", "bench.api_bench"),
    ("Research queries on PostgreSQL", "bench.pg_store_bench"),
    ("Live feed", "bench.feed_bench"),
    ("Scale-out: processes and PostgreSQL", "bench.scaleout_bench"),
    ("Soak: memory over repeated batch exports", "bench.soak_bench"),
]
OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
PREAMBLE = Path(__file__).resolve().parent / "preamble.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        ram = f"{int(memory) / 1024 / 1024:.0f} GiB"
    except (OSError, IndexError, ValueError):
        ram = "unknown"
    return (
        f"{cpu}, {os.cpu_count()} cores, {ram} RAM; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}"
    )


def table(rows: list[Any]) -> str:
    if not rows:
        return "(no rows)\n"
    if not isinstance(rows[0], dict):
        rows = [{"measure": r[0], "value": r[1], "unit": r[2] if len(r) > 2 else ""} for r in rows]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [str(row.get(column, "")).replace("|", "\\|") for column in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def replace_section(document: str, title: str, text: str) -> str:
    """``document`` with the section headed ``## {title}`` replaced by ``text`` (or appended)."""
    head = f"\n## {title}\n"
    start = document.find(head)
    if start < 0:
        return document.rstrip("\n") + "\n" + text
    end = document.find("\n## ", start + len(head))
    return document[:start] + text.rstrip("\n") + "\n" + (document[end:] if end >= 0 else "")


def main(argv: list[str]) -> int:
    wanted = set(argv)
    parts = [
        "# Performance\n",
        PREAMBLE.read_text(encoding="utf-8") if PREAMBLE.exists() else "",
        f"Measured with `make bench` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.\n",
        f"Machine: {machine()}.\n",
    ]
    failed = 0
    ran: list[tuple[str, str]] = []
    for title, module_name in SECTIONS:
        if wanted and not any(w in module_name for w in wanted):
            continue
        print(f"== {title}", flush=True)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # this section is not written yet
            raise
        try:
            rows = module.run()
        except Exception:
            failed += 1
            traceback.print_exc()
            parts.append(f"\n## {title}\n\nThe section failed in this run; see the console.\n")
            continue
        text = table(rows)
        print(text, flush=True)
        notes = getattr(module, "NOTES", "")
        section = f"\n## {title}\n\n{notes}\n{text}"
        parts.append(section)
        ran.append((title, section))
    if not wanted:
        OUTPUT.write_text("\n".join(parts), encoding="utf-8")
        print(f"wrote {OUTPUT}")
    elif ran and OUTPUT.exists():
        # A section run alone replaces only its own section, and says it was run alone.
        document = OUTPUT.read_text(encoding="utf-8")
        stamp = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
        settings = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_")]
        command = " ".join([*settings, "python -m bench", *argv])
        for title, section in ran:
            head = f"\n## {title}\n\n"
            alone = f"Measured alone with `{command}` on {stamp}.\n\n"
            document = replace_section(document, title, head + alone + section[len(head) :])
        OUTPUT.write_text(document, encoding="utf-8")
        print(f"updated {', '.join(title for title, _ in ran)} in {OUTPUT}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
