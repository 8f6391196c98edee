"""The typed errors an export raises (DESIGN.md §6: exports a user asks for fail loudly)."""

from __future__ import annotations

from collections.abc import Iterable


class ExportError(Exception):
    """Base class of every error ``exports`` raises."""


class UnknownFormatError(ExportError, LookupError):
    """No format is registered under this name.

    Attributes:
        name: the name asked for.
        known: the registered names, sorted.
    """

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown export format {name!r}; known formats: {', '.join(self.known)}")


class MissingDependencyError(ExportError, ImportError):
    """The format needs an optional library that is not installed.

    Attributes:
        format: the format's name.
        package: the import name of the missing library.
        extra: the pyproject extra that installs it.
    """

    def __init__(self, format: str, package: str, extra: str) -> None:
        self.format = format
        self.package = package
        self.extra = extra
        super().__init__(
            f"the {format!r} export needs {package!r}, which is not installed; "
            f"install it with: pip install 'execution-history[{extra}]'"
        )


class ExportFailedError(ExportError):
    """The format's own code failed; the cause is chained (``__cause__``).

    Attributes:
        format: the format's name.
    """

    def __init__(self, format: str, message: str) -> None:
        self.format = format
        super().__init__(f"the {format!r} export failed: {message}")


class BatchNotSupportedError(ExportError):
    """The format writes one run per file and has no ``export_batch``.

    Attributes:
        format: the format's name.
    """

    def __init__(self, format: str) -> None:
        self.format = format
        super().__init__(f"the {format!r} format writes one run per file; export runs one by one")
