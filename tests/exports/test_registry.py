"""The format registry: public surface, listing, lazy loading, typed errors, pseudonymisation."""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import types
from pathlib import Path

import pytest

import exports
from execution_history import ExecutionRecord, Pseudonymiser
from exports import _registry
from tests.exports._support import available, export_bytes, zip_text

PUBLIC = {
    "BatchNotSupportedError",
    "ExportError",
    "ExportFailedError",
    "FormatInfo",
    "MissingDependencyError",
    "UnknownFormatError",
    "export",
    "export_batch",
    "formats",
    "get_format",
}


def test_public_surface_is_exactly_all() -> None:
    """``exports.__all__`` is the intended public surface and every name resolves."""
    assert set(exports.__all__) == PUBLIC
    assert len(exports.__all__) == len(PUBLIC)
    for public_name in exports.__all__:
        assert getattr(exports, public_name) is not None


def test_formats_lists_the_registered_formats_with_media_types() -> None:
    """json, xml, pdf and docx are registered with their MIME types and extensions."""
    listed = {info.name: info for info in exports.formats()}
    assert {"json", "xml", "pdf", "docx"} <= set(listed)
    assert listed["json"].media_type == "application/json"
    assert listed["xml"].media_type == "application/xml"
    assert listed["pdf"].media_type == "application/pdf"
    assert listed["docx"].extension == "docx"
    assert listed["docx"].media_type.endswith("wordprocessingml.document")
    # json needs nothing beyond the core; xml and docx are installed in the test env
    assert listed["json"].available and listed["xml"].available and listed["docx"].available


def test_get_format_is_case_insensitive_and_reports_the_extra() -> None:
    """``get_format`` finds a format whatever the case and names its extra."""
    info = exports.get_format(" XML ")
    assert info.name == "xml"
    assert info.extra == "xml"
    assert info.requires == ("lxml",)


def test_unknown_format_raises_a_typed_error_listing_the_known_ones(
    finished_record: ExecutionRecord,
) -> None:
    """An unknown name raises UnknownFormatError whose message lists every format."""
    with pytest.raises(exports.UnknownFormatError) as caught:
        exports.export(finished_record, "odt", io.BytesIO())
    error = caught.value
    assert isinstance(error, exports.ExportError)
    assert error.name == "odt"
    for known in ("json", "xml", "pdf", "docx"):
        assert known in error.known
        assert known in str(error)
    with pytest.raises(exports.UnknownFormatError):
        exports.get_format("odt")


def _fake_format(
    monkeypatch: pytest.MonkeyPatch, *, requires: tuple[str, ...] = (), body: str = "pass"
) -> str:
    """Register a throw-away format backed by an in-memory module; return its name."""
    module = types.ModuleType("exports._fake_for_tests")
    exec(  # builds a real module the registry imports by name
        "name = 'fake'\nmedia_type = 'text/plain'\nextension = 'txt'\n"
        "description = 'test'\nrequires = ()\nextra = 'fake'\n"
        "def export(record, stream, *, media_dir=None):\n"
        f"    {body}\n",
        module.__dict__,
    )
    monkeypatch.setitem(sys.modules, "exports._fake_for_tests", module)
    module.__spec__ = importlib.machinery.ModuleSpec("exports._fake_for_tests", None)
    info = exports.FormatInfo(
        "fake",
        "text/plain",
        "txt",
        "test",
        available=True,
        requires=requires,
        extra="fake",
        module="exports._fake_for_tests",
    )
    monkeypatch.setitem(_registry._REGISTRY, "fake", info)
    monkeypatch.setattr(_registry, "_loaded", {})
    return "fake"


def test_missing_library_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, finished_record: ExecutionRecord
) -> None:
    """A format whose library is absent is unavailable and raises MissingDependencyError."""
    fmt = _fake_format(monkeypatch, requires=("no_such_library_for_tests",))
    assert not exports.get_format(fmt).available
    with pytest.raises(exports.MissingDependencyError) as caught:
        exports.export(finished_record, fmt, io.BytesIO())
    error = caught.value
    assert (error.format, error.package, error.extra) == (
        "fake",
        "no_such_library_for_tests",
        "fake",
    )
    assert "pip install 'execution-history[fake]'" in str(error)
    assert isinstance(error, exports.ExportError)


def test_a_registered_but_absent_module_is_unavailable_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, finished_record: ExecutionRecord
) -> None:
    """A registration whose module file does not exist lists as unavailable and fails typed."""
    info = exports.FormatInfo(
        "ghost", "text/plain", "txt", "absent", available=True, module="exports._ghost_absent"
    )
    monkeypatch.setitem(_registry._REGISTRY, "ghost", info)
    assert [i.available for i in exports.formats() if i.name == "ghost"] == [False]
    with pytest.raises(exports.ExportFailedError, match="not installed"):
        exports.export(finished_record, "ghost", io.BytesIO())


def test_errors_in_a_format_are_wrapped_and_chained(
    monkeypatch: pytest.MonkeyPatch, finished_record: ExecutionRecord
) -> None:
    """A format's own exception surfaces as ExportFailedError chained from the cause."""
    fmt = _fake_format(monkeypatch, body="raise ValueError('boom in format')")
    with pytest.raises(exports.ExportFailedError) as caught:
        exports.export(finished_record, fmt, io.BytesIO())
    assert "fake" in str(caught.value) and "boom in format" in str(caught.value)
    assert isinstance(caught.value.__cause__, ValueError)


def test_a_format_module_is_imported_once(
    monkeypatch: pytest.MonkeyPatch, finished_record: ExecutionRecord
) -> None:
    """The registry caches the loaded module: two exports, one import."""
    fmt = _fake_format(monkeypatch)
    calls: list[str] = []
    real_import = importlib.import_module

    def counting_import(module: str) -> types.ModuleType:
        calls.append(module)
        return real_import(module)

    monkeypatch.setattr(_registry.importlib, "import_module", counting_import)
    exports.export(finished_record, fmt, io.BytesIO())
    exports.export(finished_record, fmt, io.BytesIO())
    assert calls == ["exports._fake_for_tests"]


def test_listing_formats_imports_no_format_library() -> None:
    """``import exports; exports.formats()`` loads neither lxml, python-docx, reportlab nor the
    OpenTelemetry SDK (looking up ``opentelemetry.sdk`` imports only its empty namespace
    package ``opentelemetry``)."""
    code = (
        "import sys, exports\n"
        "exports.formats()\n"
        "heavy = ('lxml', 'docx', 'reportlab', 'PIL', 'openpyxl', 'opentelemetry.sdk',\n"
        "         'google.protobuf')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.stdout.strip() == ""


def test_registry_metadata_matches_each_format_module() -> None:
    """What the registry declares equals what each installed format module defines."""
    checked = []
    for info in exports.formats():
        if not info.available:
            continue
        module = importlib.import_module(info.module)
        assert module.name == info.name
        assert module.media_type == info.media_type
        assert module.extension == info.extension
        assert module.description == info.description
        assert tuple(module.requires) == info.requires
        assert module.extra == info.extra
        assert callable(module.export)
        assert hasattr(module, "export_batch") == info.batch
        checked.append(info.name)
    assert {"json", "xml", "docx"} <= set(checked)


def test_batch_export_of_a_single_run_format_is_refused(finished_record: ExecutionRecord) -> None:
    """``export_batch`` on a one-run-per-file format raises BatchNotSupportedError."""
    with pytest.raises(exports.BatchNotSupportedError):
        exports.export_batch([(finished_record, None)], "json", io.BytesIO())


@pytest.mark.parametrize("fmt", ["json", "xml", "docx", "pdf"])
def test_exports_never_contain_raw_user_or_session_ids(
    fmt: str,
    finished_record: ExecutionRecord,
    media_dir: Path,
    pseudonymiser: Pseudonymiser,
) -> None:
    """Raw ids are replaced by keyed pseudonyms (or dropped) in every format (DESIGN §5)."""
    if not available(fmt):
        pytest.skip(f"{fmt} is not installed here")
    assert finished_record.user_id == "child-42"
    expected_user = pseudonymiser.user("child-42")
    for chosen in (pseudonymiser, None):
        data = export_bytes(finished_record, fmt, media_dir, pseudonymiser=chosen)
        if fmt == "docx":
            text = zip_text(data)
        elif fmt == "pdf":
            from pypdf import PdfReader

            text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
            text += data.decode("latin-1")
        else:
            text = data.decode("utf-8")
        assert "child-42" not in text
        assert "class-7b" not in text
        if chosen is not None and fmt != "pdf":
            assert expected_user in text
