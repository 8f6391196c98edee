"""The data dir's layout: every file and folder the server and the commands use, named once."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from execution_history import is_run_id

#: Where the data dir is when ``DEVSERVER_DATA_DIR`` is not set.
DEFAULT_DATA_DIR = "./instance"


@dataclass(frozen=True, slots=True)
class DataDir:
    """The paths inside one data dir (nothing is created here).

    ``root`` holds the SQLite database (unless ``DEVSERVER_DATABASE_URL``
    names another), the media, the in-flight journals, the quarantine, the
    generated secrets, and the runs saved when nothing else could be written.
    """

    root: Path

    @property
    def database(self) -> Path:
        """The default SQLite database."""
        return self.root / "history.sqlite3"

    @property
    def media_root(self) -> Path:
        """One folder per run id inside."""
        return self.root / "media"

    def media_dir(self, run_id: str) -> Path:
        """The media folder of ``run_id``.

        Raises:
            ValueError: ``run_id`` is not a well-formed run id (never a path from anything else).
        """
        if not is_run_id(run_id):
            raise ValueError("not a run id")
        return self.media_root / run_id

    @property
    def journal(self) -> Path:
        """In-flight runs, one folder per living process."""
        return self.root / "journal"

    @property
    def damaged_journals(self) -> Path:
        """Journal files recovery could not read, kept for inspection."""
        return self.root / "journal-damaged"

    @property
    def quarantine(self) -> Path:
        """Records the store refused, re-imported at the next start."""
        return self.root / "quarantine"

    @property
    def research_token_file(self) -> Path:
        """The generated research token (mode 0600)."""
        return self.root / "research_token"

    @property
    def pseudonym_key_file(self) -> Path:
        """The generated pseudonym key (mode 0600)."""
        return self.root / "pseudonym_key"

    @property
    def last_resort_dirs(self) -> list[Path]:
        """Where runs go at shutdown that neither the store nor the quarantine took."""
        return last_resort_dirs(self.root, Path(tempfile.gettempdir()))


def last_resort_dirs(data_dir: Path, temp_root: Path) -> list[Path]:
    """``<data_dir>/unwritten``, then a folder of this data dir's own under ``temp_root``.

    The second is named after the data dir's path, so that a start imports
    only its own runs from it, never another data dir's.
    """
    key = hashlib.sha256(str(data_dir.resolve()).encode("utf-8", "surrogatepass")).hexdigest()
    return [data_dir / "unwritten", temp_root / "devserver-unwritten" / key[:16]]
