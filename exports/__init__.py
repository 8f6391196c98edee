"""Export finished runs as JSON, XML, PDF, DOCX and research formats through one registry.

``formats()`` lists what is registered (and installed); ``export(record, name,
stream)`` writes one run, pseudonymised, to a binary stream. Format libraries
are imported on first use only.
"""

from __future__ import annotations

from ._errors import (
    BatchNotSupportedError,
    ExportError,
    ExportFailedError,
    MissingDependencyError,
    UnknownFormatError,
)
from ._registry import FormatInfo, export, export_batch, formats, get_format

__all__ = [
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
]
