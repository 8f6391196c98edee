"""REFI-QDA codebook (qdc): the pipeline stages as a non-codable code group, for any QDA tool.

The same codes as in every ``qdpx`` project (same GUIDs), as a standalone
``CodeBook`` in the namespace ``urn:QDA-XML:codebook:1.0`` (``Codebook.xsd``):
one group "Pipeline stages" with stages 0 to 5, none of them codable. It does
not depend on the runs, so a batch writes one codebook.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from execution_history import ExecutionRecord

from ._qdpx import CODEBOOK_NS, codebook_codes

name = "qdc"
media_type = "application/xml"
extension = "qdc"
description = "REFI-QDA codebook: the pipeline stages as a non-codable code group"
requires: tuple[str, ...] = ("lxml",)
extra = "research"


def codebook_bytes() -> bytes:
    """The codebook document: UTF-8, XML declaration, no BOM.

    Returns:
        The serialised ``CodeBook``.
    """
    from lxml import etree

    root = etree.Element(
        f"{{{CODEBOOK_NS}}}CodeBook",
        {"origin": "execution-history"},
        # lxml-stubs reject the None key that lxml uses for the default namespace
        nsmap={None: CODEBOOK_NS},  # type: ignore[dict-item]
    )
    root.append(codebook_codes(CODEBOOK_NS))
    return bytes(etree.tostring(root, encoding="utf-8", xml_declaration=True, pretty_print=True))


def export(record: ExecutionRecord, stream: BinaryIO, *, media_dir: Path | None = None) -> None:
    """Write the codebook (the same for every run).

    Args:
        record: a finished record (only its presence matters: the codebook is fixed).
        stream: a writable binary stream.
        media_dir: unused.
    """
    stream.write(codebook_bytes())


def export_batch(records: Iterable[tuple[ExecutionRecord, Path | None]], stream: BinaryIO) -> None:
    """Write one codebook for a batch (it does not depend on the runs).

    Args:
        records: pairs of a record and its media folder; not read.
        stream: a writable binary stream.
    """
    stream.write(codebook_bytes())
