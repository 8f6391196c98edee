"""The name and version of this software, as the exported files credit it."""

from __future__ import annotations

from functools import lru_cache

#: The distribution's name, as pyproject.toml declares it.
SOFTWARE_NAME = "execution-history"


@lru_cache(maxsize=1)
def software_id() -> str:
    """``execution-history 0.1.0``: the name and installed version of this software.

    Returns:
        The name alone when the distribution's metadata cannot be read (a source
        checkout that was never installed): a version is never guessed.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{SOFTWARE_NAME} {version(SOFTWARE_NAME)}"
    except PackageNotFoundError:
        return SOFTWARE_NAME
