"""Research commands of the ``devserver`` script: status, runs, show, export, forget, prune.

They work on the data dir directly (``DEVSERVER_DATA_DIR``), with no server
running or needed. Exit codes: 0 success, 1 nothing found (or the operation
failed), 2 bad usage; errors go to stderr in one sentence.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

import click

import exports
from execution_history import (
    ExecutionRecord,
    ItemType,
    Pseudonymiser,
    RecordStore,
    RunFilter,
    StoreSink,
    is_run_id,
)

from .._data_dir import DataDir
from .._settings import (
    Settings,
    SettingsError,
    data_dir_of,
    defaults_from_environment,
    resolve,
)
from .._state import open_configured_store, software_version
from ..pipeline._journals import erase_people_journals, journal_census
from ..pipeline.safety import SAFETY_LEVELS
from ..research._batch import BatchReport, BatchRequest, safe_file_name, stream_batch
from ..research._queries import (
    STATUSES,
    QueryError,
    list_entry,
    parse_filters,
    public_filters,
    run_filter,
)
from ._journey import describe


class Failure(click.ClickException):
    """An error printed as one sentence on stderr; exit code 1."""

    exit_code = 1


class BadUsage(Failure):
    """A command used wrongly; exit code 2 (like click's own usage errors)."""

    exit_code = 2


def _nothing(message: str) -> Failure:
    return Failure(message)


def _usage(message: str) -> Failure:
    return BadUsage(message)


@dataclass
class OpenData:
    """What the commands read and erase: the store, the data dir's paths, the pseudonym key."""

    settings: Settings
    store: RecordStore

    @property
    def paths(self) -> DataDir:
        """Every path inside the data dir."""
        return self.settings.data

    @property
    def pseudonymiser(self) -> Pseudonymiser:
        """Pseudonyms with the server's key, the same as in the server's answers."""
        return Pseudonymiser(self.settings.pseudonym_key)


@contextlib.contextmanager
def open_data_dir() -> Iterator[OpenData]:
    """The data dir of ``DEVSERVER_DATA_DIR`` (default ``./instance``), opened without a server.

    Raises:
        Failure: exit 1 when there is no data dir or database yet; exit 2 for a bad setting.
    """
    config = defaults_from_environment()
    folder = data_dir_of(config).root
    if not folder.is_dir():
        raise _nothing(
            f"There is no data dir at {folder}; start the server once or set DEVSERVER_DATA_DIR."
        )
    try:
        settings = resolve(config)
    except SettingsError as exc:
        raise _usage(str(exc)) from None
    if settings.database_path is not None and not settings.database_path.exists():
        raise _nothing(f"There is no database at {settings.database_path}; no run was stored yet.")
    try:
        store = open_configured_store(settings)
    except SettingsError as exc:  # unreachable, or a schema to upgrade: not a usage error
        raise _nothing(str(exc)) from None
    try:
        yield OpenData(settings, store)
    finally:
        store.close()


def _filters(**given: str | None) -> dict[str, str]:
    try:
        return parse_filters({k: v for k, v in given.items() if v is not None})
    except QueryError as exc:
        # The API's messages name parameters ('since'); here they are options (--since).
        message = re.sub(r"'([a-z_]+)'", lambda m: "--" + m.group(1).replace("_", "-"), str(exc))
        raise _usage(message + ".") from None


def _filter_options(command: Any) -> Any:
    """The research filters as options (the same as the HTTP API's)."""
    options = [
        click.option("--config", help="Only runs of this config."),
        click.option("--status", type=click.Choice(STATUSES), help="Only runs with this status."),
        click.option("--safety-level", type=click.Choice(SAFETY_LEVELS), help="Only this level."),
        click.option("--session-id", help="Only runs of this (raw) session id (a workshop)."),
        click.option("--device-id", help="Only runs from this (raw) device id."),
        click.option("--since", help="Runs started at or after this ISO 8601 time (UTC)."),
        click.option("--until", help="Runs started before this ISO 8601 time (UTC)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _size(count: int | None) -> str:
    if count is None:
        return "size unknown"
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} bytes"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]  # fmt: skip
    return "\n".join(lines)


def _counts(mapping: dict[str, int]) -> str:
    return ", ".join(f"{key or '(none)'} {value}" for key, value in mapping.items()) or "none"


# ----------------------------------------------------------------------- status


def _error_text(record: ExecutionRecord | None) -> str:
    if record is None:
        return ""
    for item in reversed(record.items):
        if item.item_type == ItemType.PIPELINE_ERROR:
            text = " ".join((item.content or "").split())
            return text[:100] + ("…" if len(text) > 100 else "")
    return ""


@click.command("status")
def status() -> None:
    """An overview of the stored runs, runs in flight, failures and integrity (changes no data)."""
    with open_data_dir() as data:
        store = data.store
        stats = store.stats()
        alive, dead = journal_census(data.paths.journal)
        quarantined = StoreSink(store, data.paths.quarantine).quarantined()
        echo = click.echo
        echo(f"Data dir:     {data.settings.data_dir}")
        problem = store.ping()
        echo(f"Store:        {store.describe()}, {_size(store.size_bytes())}, "
             f"{stats.runs} run(s)")  # fmt: skip
        echo("Reachable:    " + ("yes, it can be written" if problem is None
                                 else f"NO, it cannot be written now: {problem}"))  # fmt: skip
        echo(f"By status:    {_counts(stats.by_status)}")
        echo(f"By config:    {_counts(stats.by_config)}")
        echo(f"By level:     {_counts(stats.by_safety_level)}")
        echo(f"In flight:    {alive} run(s) in living server processes (queued, running or "
             "not yet written; GET /api/health of a server breaks them down)")  # fmt: skip
        echo(f"Incomplete:   {stats.by_status.get('incomplete', 0)} stored, {dead} waiting for "
             "recovery at the next start")  # fmt: skip
        echo(f"Quarantined:  {len(quarantined)} record(s) waiting to be re-imported")
        for label, folder, what in (
            ("Unwritten:   ", data.paths.last_resort_dirs[0],
             "record(s) saved at a shutdown when store and quarantine failed; move them into "
             "the quarantine folder to import them"),
            ("Damaged:     ", data.paths.damaged_journals,
             "journal file(s) recovery could not read, kept for inspection"),
        ):  # fmt: skip
            found = sorted(folder.glob("*.json*")) if folder.is_dir() else []
            if found:
                echo(f"{label} {len(found)} {what} ({folder})")
        echo("Stages:")
        for stage, counts in stats.stages.items():
            echo(f"  {stage}: {counts['items']} items, {counts['failures']} failures "
                 f"({counts['runs_with_failures']} runs), {counts['blocks']} blocks "
                 f"({counts['runs_with_blocks']} runs)")  # fmt: skip
        integrity = stats.integrity
        echo(f"Integrity:    {integrity.get('items_dropped', 0)} items dropped, "
             f"{integrity.get('fields_truncated', 0)} fields truncated, "
             f"{integrity.get('values_coerced', 0)} values coerced, "
             f"{integrity.get('tracker_errors', 0)} tracker errors")  # fmt: skip
        errors = store.list_runs(RunFilter(status="error"), 5)
        echo("Last errors:" + ("" if errors else "  none"))
        for row in errors:
            text = _error_text(store.load(row.run_id))
            echo(f"  {row.started_at}  {row.run_id}  {row.config_name}: {text or '(no message)'}")


# ------------------------------------------------------------------------- runs


@click.command("runs")
@_filter_options
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def runs(
    config: str | None,
    status: str | None,
    safety_level: str | None,
    session_id: str | None,
    device_id: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """A table of stored runs, newest first (pseudonyms only)."""
    filters = _filters(config=config, status=status, safety_level=safety_level,
                       session_id=session_id, device_id=device_id,
                       since=since, until=until)  # fmt: skip
    with open_data_dir() as data:
        rows = data.store.list_runs(run_filter(filters), limit)
        if not rows:
            raise _nothing("No stored run matches these filters.")
        pseudonymiser = data.pseudonymiser
        if as_json:
            for row in rows:
                click.echo(json.dumps(list_entry(row, pseudonymiser), ensure_ascii=False))
            return
        table = []
        for row in rows:
            summary = list_entry(row, pseudonymiser)
            table.append([
                row.run_id,
                row.started_at[:19].replace("T", " "),
                str(row.config_name),
                row.status,
                str(row.safety_level),
                str(row.item_count),
                summary["user_pseudonym"] or "-",
            ])  # fmt: skip
        header = ["RUN ID", "STARTED (UTC)", "CONFIG", "STATUS", "LEVEL", "ITEMS", "USER"]
        click.echo(_table(table, header))


# ------------------------------------------------------------------------- show


def _run_id(value: str) -> str:
    if not is_run_id(value):
        raise _usage("RUN_ID must be 32 lowercase hexadecimal characters.")
    return value


@click.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="The pseudonymised record as JSON.")
def show(run_id: str, as_json: bool) -> None:
    """The journey of one run, stage by stage, iteration by iteration."""
    _run_id(run_id)
    with open_data_dir() as data:
        record = data.store.load(run_id)
        if record is None:
            raise _nothing("No run with this id is stored (a running run is stored when it ends).")
        public = record.pseudonymised(data.pseudonymiser)
    if as_json:
        click.echo(public.model_dump_json(indent=2))
        return
    echo = click.echo
    ended = public.ended_at.isoformat() if public.ended_at else "-"
    echo(f"Run {public.run_id}")
    echo(f"  config {public.config_name}, safety level {public.safety_level}, "
         f"status {public.status}")  # fmt: skip
    echo(f"  user {public.user_pseudonym or '-'}, session {public.session_pseudonym or '-'}")
    echo(f"  started {public.started_at.isoformat()}, ended {ended}, "
         f"{public.duration_ms if public.duration_ms is not None else '-'} ms")  # fmt: skip
    echo(f"  software {public.software_version}, taxonomy {public.taxonomy_version}")
    echo("Stages:")
    for stage in public.stages:
        echo(f"  {stage.stage} {stage.name}: {stage.status}, {stage.items} items, "
             f"{stage.failures} failures, {stage.blocks} blocks")  # fmt: skip
    iterations = sum(1 for i in public.items if i.item_type == ItemType.INTERCEPTION_ITERATION)
    for item in public.items:
        line = describe(item, iterations)
        if line is not None:
            echo(line)
    integrity = public.integrity
    echo(f"\nIntegrity: {integrity.items_recorded} items recorded, {integrity.items_dropped} "
         f"dropped, {integrity.fields_truncated} fields truncated, {integrity.values_coerced} "
         f"values coerced, {integrity.tracker_errors} tracker errors")  # fmt: skip


# ----------------------------------------------------------------------- export


def _format(name: str) -> exports.FormatInfo:
    try:
        info = exports.get_format(name)
    except exports.UnknownFormatError as exc:
        raise _usage(f"Unknown format; choose one of: {', '.join(exc.known)}.") from None
    if not info.available:
        raise Failure(
            f"The {info.name} format needs: pip install 'execution-history[{info.extra}]'."
        )
    return info


def _refuse_overwrite(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise _usage(f"{path} exists already; pass --force to replace it.")


@click.command("export")
@click.argument("run_id", required=False)
@click.option("--format", "-f", "format_name", required=True, help="A format from /api/formats.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write ('-': stdout, one run only); needed for a batch.",
)
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@_filter_options
def export(
    run_id: str | None,
    format_name: str,
    output: Path | None,
    force: bool,
    config: str | None,
    status: str | None,
    safety_level: str | None,
    session_id: str | None,
    device_id: str | None,
    since: str | None,
    until: str | None,
) -> None:
    """Export RUN_ID in one format, or every run matching the filters into a ZIP (-o FILE.zip)."""
    info = _format(format_name)
    given = dict(config=config, status=status, safety_level=safety_level,
                 session_id=session_id, device_id=device_id, since=since, until=until)  # fmt: skip
    if run_id is not None:
        if any(v is not None for v in given.values()):
            raise _usage("Filters select runs for a batch; leave them out when naming RUN_ID.")
        _export_one(_run_id(run_id), info, output, force)
    else:
        _export_batch(info, _filters(**given), output, force)


def _export_one(run_id: str, info: exports.FormatInfo, output: Path | None, force: bool) -> None:
    with open_data_dir() as data:
        record = data.store.load(run_id)
        if record is None:
            raise _nothing("No run with this id is stored (a running run is stored when it ends).")
        target = output or Path(safe_file_name(run_id, record.config_name, info.extension))
        to_stdout = str(target) == "-"
        if not to_stdout:
            _refuse_overwrite(target, force)
        partial = target.with_name(f".{target.name}.partial")
        try:
            with (
                contextlib.nullcontext(sys.stdout.buffer)
                if to_stdout
                else partial.open("wb") as stream
            ):
                exports.export(
                    record,
                    info.name,
                    cast(BinaryIO, stream),
                    media_dir=data.paths.media_dir(run_id),
                    pseudonymiser=data.pseudonymiser,
                    options=data.settings.export_options,
                )
        except exports.ExportError as exc:
            partial.unlink(missing_ok=True)
            raise Failure(f"The export failed: {exc}.") from None
        if not to_stdout:
            partial.replace(target)
            click.echo(f"Wrote {target} ({_size(target.stat().st_size)}).", err=True)


def _export_batch(
    info: exports.FormatInfo, filters: dict[str, str], output: Path | None, force: bool
) -> None:
    if output is None or not output.name.lower().endswith(".zip") or str(output) == "-":
        raise _usage("A batch export needs -o FILE.zip.")
    _refuse_overwrite(output, force)
    with open_data_dir() as data:
        selection = run_filter(filters)
        total = data.store.count(selection)
        if total == 0:
            raise _nothing("No stored run matches these filters.")
        pseudonymiser = data.pseudonymiser
        batch = BatchRequest(
            store=data.store,
            media_root=data.paths.media_root,
            pseudonymiser=pseudonymiser,
            format=info,
            run_filter=selection,
            shown_filters=public_filters(filters, pseudonymiser),
            software_version=software_version(),
            options=data.settings.export_options,
        )
        summary = BatchReport()
        partial = output.with_name(f".{output.name}.partial")
        with click.progressbar(length=total, label="Exporting", file=sys.stderr) as bar:
            try:
                with partial.open("wb") as stream:
                    chunks = stream_batch(batch, summary=summary, on_run=lambda _: bar.update(1))
                    for chunk in chunks:
                        stream.write(chunk)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        partial.replace(output)
    media = sum(1 for f in summary.files if f.get("kind") == "media")
    click.echo(
        f"Exported {summary.runs} run(s) as {info.name} with {media} media file(s) to {output} "
        f"({_size(output.stat().st_size)}); {len(summary.missing_media)} media file(s) missing, "
        f"{len(summary.failed)} run(s) failed; manifest.json lists every file with its sha256."
    )


# ------------------------------------------------------------------ forget, prune


def _erase_media(data: OpenData, run_ids: list[str]) -> int:
    erased = 0
    for run_id in run_ids:
        if not is_run_id(run_id):  # never build a path from anything else
            continue
        folder = data.paths.media_dir(run_id)
        if folder.is_dir():
            shutil.rmtree(folder)
            erased += 1
    return erased


def _erase_waiting_copies(data: OpenData, people: RunFilter) -> tuple[int, int]:
    """Erase quarantined, unwritten and dead processes' copies of the selected runs;
    count the ones still in flight."""
    erased = sum(
        StoreSink(data.store, folder).erase_people(people)
        for folder in (data.paths.quarantine, *data.paths.last_resort_dirs)
    )
    journals, in_flight = erase_people_journals(data.paths.journal, people)
    return erased + journals, in_flight


def _whose(data: OpenData, people: RunFilter) -> str:
    """Who is erased, in pseudonyms only (never the raw ids, which may name a child)."""
    named = []
    if people.user_id is not None:
        named.append(data.pseudonymiser.user(people.user_id))
    if people.session_id is not None:
        named.append(data.pseudonymiser.session(people.session_id))
    if people.device_id is not None:
        named.append(data.pseudonymiser.device(people.device_id))
    return " and ".join(named)


@click.command("forget")
@click.option("--user-id", help="The person's raw user id.")
@click.option("--session-id", help="A workshop's raw session id: every run of the workshop.")
@click.option("--device-id", help="A device's raw id (the page's): every run from the device.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def forget(user_id: str | None, session_id: str | None, device_id: str | None, yes: bool) -> None:
    """Erase every run of a person, a workshop or a device, with the media (right to erasure).

    Several ids erase the runs that match all of them.
    """
    given = {"--user-id": user_id, "--session-id": session_id, "--device-id": device_id}
    if all(value is None for value in given.values()):
        raise _usage("Name whose runs to erase: --user-id, --session-id or --device-id.")
    for option, value in given.items():
        if value is not None and not value.strip():
            raise _usage(f"{option} must not be empty.")
    people = RunFilter(user_id=user_id, session_id=session_id, device_id=device_id)
    with open_data_dir() as data:
        whose = _whose(data, people)
        count = data.store.count(people)
        if count == 0:
            waiting, in_flight = _erase_waiting_copies(data, people)
            if waiting or in_flight:
                click.echo(f"Erased {waiting} unfinished copy(ies) of runs of {whose}.")
                _warn_in_flight(in_flight)
                return
            raise _nothing(f"No stored run belongs to this person, workshop or device ({whose}).")
        if not yes:
            click.confirm(
                f"Erase {count} run(s) of {whose} and their media files? This cannot be undone",
                abort=True,
                err=True,
            )
        run_ids = data.store.delete_people(people)
        folders = _erase_media(data, run_ids)
        waiting, in_flight = _erase_waiting_copies(data, people)
    click.echo(f"Erased {len(run_ids)} run(s) of {whose} and {folders} media folder(s)"
               + (f", and {waiting} unfinished copy(ies)" if waiting else "") + ":")  # fmt: skip
    for run_id in run_ids:
        click.echo(f"  {run_id}")
    _warn_in_flight(in_flight)


def _warn_in_flight(in_flight: int) -> None:
    if in_flight:
        click.echo(
            f"{in_flight} of the run(s) to erase are still in progress; run forget again once "
            "they have ended.",
            err=True,
        )


@click.command("prune")
@click.option("--older-than", "days", type=click.IntRange(min=1), required=True, metavar="DAYS",
              help="Erase runs that started more than DAYS days ago.")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Only say what would be erased.")
def prune(days: int, dry_run: bool) -> None:
    """Retention: erase runs (and their media) that started more than DAYS days ago."""
    cutoff = datetime.now(UTC) - timedelta(days=days)
    stamp = cutoff.strftime("%Y-%m-%d %H:%M UTC")
    with open_data_dir() as data:
        run_ids = data.store.delete_older_than(cutoff, dry_run=dry_run)
        if not run_ids:
            raise _nothing(f"No stored run started before {stamp}.")
        if dry_run:
            click.echo(f"Would erase {len(run_ids)} run(s) started before {stamp}, with media:")
        else:
            folders = _erase_media(data, run_ids)
            click.echo(f"Erased {len(run_ids)} run(s) started before {stamp} and "
                       f"{folders} media folder(s):")  # fmt: skip
    for run_id in run_ids:
        click.echo(f"  {run_id}")


COMMANDS = (status, runs, show, export, forget, prune)


def register(group: click.Group) -> None:
    """Add the research commands to the ``devserver`` group."""
    for command in COMMANDS:
        group.add_command(command)
