"""Media are served, exported and measured only from inside the run's folder, never through a link.

Against a real ``devserver serve``: symbolic links of every kind planted in a
run's media folder (to a file outside, to the database, to a file inside, to
a folder, dangling), a FIFO, and a run's folder replaced by a link. None of
them is followed by the media route, the single-run exports or the batch
export; the real output is still served.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from execution_history import ExecutionTracker, ItemType

from ..faults import AUTH, Served, call, server_env

SECRET = b"SECRET-OUTSIDE-THE-MEDIA-FOLDER"


def _run_with_image(server: Served) -> tuple[str, str]:
    status, answer = server.post_run(
        {"config": "stillepost", "input": "Ein Hund spielt im Garten"}, wait=True
    )
    assert status == 200, answer
    (output,) = [o for o in answer["summary"]["outputs"] if o["mime_type"] == "image/png"][:1]
    return answer["run_id"], output["url"].rsplit("/", 1)[-1]


@pytest.mark.timeout(120)
def test_no_link_in_a_media_folder_is_ever_followed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(SECRET)
    with Served(server_env(data, tmp_path / "tmp")) as server:
        run_id, real = _run_with_image(server)
        folder = data / "media" / run_id
        real_bytes = (folder / real).read_bytes()
        links = {
            "leak.png": Path("/etc/passwd"),
            "outside.png": outside / "secret.png",
            "database.png": data / "history.sqlite3",
            "inner.png": folder / real,  # inside, but still a link
            "relative.png": Path("..") / ".." / "outside" / "secret.png",
            "folder.png": outside,
            "dangling.png": tmp_path / "nothing-here.png",
        }
        for name, target in links.items():
            (folder / name).symlink_to(target)
        os.mkfifo(folder / "fifo.png")  # a reader that opened it would block
        for name in [*links, "fifo.png", "missing.png"]:
            status, body = call(server.base, "GET", f"/api/runs/{run_id}/media/{name}", timeout=10)
            assert status == 404, (name, body[:80])
            assert SECRET not in body and b"root:" not in body and b"SQLite" not in body
        status, body = call(server.base, "GET", f"/api/runs/{run_id}/media/{real}")
        assert status == 200 and body == real_bytes

        # A second run whose whole folder is replaced by a link to a folder outside.
        other, other_name = _run_with_image(server)
        other_folder = data / "media" / other
        other_folder.rename(tmp_path / "moved")
        (outside / other_name).write_bytes(SECRET)
        other_folder.symlink_to(outside, target_is_directory=True)
        status, body = call(server.base, "GET", f"/api/runs/{other}/media/{other_name}")
        assert status == 404 and SECRET not in body

        # The real output replaced by a link: no export reads through it.
        (folder / real).unlink()
        (folder / real).symlink_to(outside / "secret.png")
        for fmt in ("rocrate", "qdpx", "pdf", "docx"):
            status, body = call(server.base, "GET", f"/api/runs/{run_id}/export/{fmt}")
            assert status == 200, (fmt, body[:200])
            assert SECRET not in body, fmt
            if fmt in ("rocrate", "qdpx", "docx"):
                with zipfile.ZipFile(io.BytesIO(body)) as archive:
                    for info in archive.infolist():
                        assert SECRET not in archive.read(info), (fmt, info.filename)
        status, body = call(server.base, "GET", "/api/exports?format=json", headers=AUTH)
        assert status == 200
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            names = archive.namelist()
            for name in names:
                assert SECRET not in archive.read(name), name
            manifest = [n for n in names if n.endswith("manifest.json")]
            assert manifest and b"unsafe path" in archive.read(manifest[0])
        assert server.stop() == 0


def test_media_checksums_are_never_taken_through_a_link(tmp_path: Path) -> None:
    """The finaliser measures media files; a link there leaves size and sha256 empty."""
    media = tmp_path / "media"
    media.mkdir()
    (tmp_path / "outside.png").write_bytes(SECRET)
    (media / "linked.png").symlink_to(tmp_path / "outside.png")
    (media / "real.png").write_bytes(b"\x89PNG real")
    tracker = ExecutionTracker("x", media_dir=media)
    with tracker, tracker.stage(4):
        tracker.log_output(ItemType.OUTPUT_IMAGE, {"path": "linked.png"})
        tracker.log_output(ItemType.OUTPUT_IMAGE, {"path": "real.png"})
    linked, real = [i.media for i in tracker.finalize().items if i.media is not None]
    assert linked is not None and linked.size_bytes is None and linked.sha256 is None
    assert real is not None and real.size_bytes == len(b"\x89PNG real")
