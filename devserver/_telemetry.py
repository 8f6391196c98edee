"""The OTLP sink from the settings: each run as an OpenTelemetry trace (docs/otel.md).

Decided once at start: no endpoint, no sink (and no OpenTelemetry import). An
endpoint without the ``otel`` extra installed does not stop the server (the
variable may be set for other programs on the machine); it is logged and shown
in ``/api/health``.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from execution_history import OtlpSink, Pseudonymiser, SinkOutcome, TraceOptions

from ._settings import OtelSettings

logger = logging.getLogger("devserver")

#: Told each settled outcome (the store's ``add_sink_outcomes``).
Report = Callable[[Sequence[tuple[str, SinkOutcome]]], object]


@dataclass(frozen=True, slots=True)
class Telemetry:
    """The OTLP sink (None when off) and why it is off when it should be on."""

    settings: OtelSettings
    sink: OtlpSink | None = None
    problem: str | None = None

    def health(self) -> dict[str, Any]:
        """The ``otlp`` part of ``/api/health``."""
        answer: dict[str, Any] = {
            "enabled": self.sink is not None,
            "endpoint": _shown(self.settings.endpoint),
            "problem": self.problem,
            "capture_content": self.settings.capture_content,
        }
        if self.sink is not None:
            answer.update(self.sink.health())
        return answer

    def close(self) -> int:
        """Send what waits, within the export deadline; returns runs dropped at shutdown."""
        return self.sink.close() if self.sink is not None else 0


def _shown(endpoint: str | None) -> str | None:
    """The endpoint without a user name or password in it (health is not a secret store)."""
    if endpoint is None:
        return None
    parts = urllib.parse.urlsplit(endpoint)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def make_telemetry(
    settings: OtelSettings,
    *,
    pseudonymiser: Pseudonymiser,
    service_version: str,
    report: Report | None,
) -> Telemetry:
    """The OTLP sink the settings ask for, or none (with the reason when one was asked for).

    Args:
        settings: the resolved OpenTelemetry settings.
        pseudonymiser: the keyed pseudonyms that replace the raw ids in every trace.
        service_version: ``service.version`` of the resource.
        report: told each outcome once known (adds it to the stored record).
    """
    if settings.disabled:
        logger.info("OTLP export off: OTEL_SDK_DISABLED=true")
    if settings.endpoint is None:
        return Telemetry(settings)
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        problem = (
            f"an OTLP endpoint is set but OpenTelemetry is not installed ({exc.name}); "
            "install it with: pip install 'execution-history[otel]'"
        )
        logger.error("OTLP export off: %s", problem)
        return Telemetry(settings, problem=problem)
    exporter = OTLPSpanExporter(
        endpoint=settings.endpoint,
        headers=dict(settings.headers),
        timeout=settings.export_timeout_s,
    )
    options = TraceOptions(
        service_name=settings.service_name,
        capture_content=settings.capture_content,
        resource_attributes={"service.version": service_version},
    )
    sink = OtlpSink(
        exporter,
        options,
        pseudonymiser=pseudonymiser,
        deadline_s=settings.export_timeout_s,
        queue_size=settings.queue_size,
        report=report,
    )
    logger.info(
        "OTLP export of every run to %s (texts %s)",
        _shown(settings.endpoint),
        "included" if settings.capture_content else "left out",
    )
    return Telemetry(settings, sink=sink)
