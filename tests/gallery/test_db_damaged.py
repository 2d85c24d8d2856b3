"""A gallery database that cannot be opened gives one GalleryOpenError with a sentence, the path and the kind of
problem, on real damaged files; the damaged file is never changed, and setting it aside lets a new gallery
start next to it."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.gallery.db import DB_NAME, GalleryDB, GalleryOpenError
from app.gallery.db_open import set_aside
from app.gallery.errors import OpenProblem
from app.gallery.filters import GalleryFilter
from tests.gallery.helpers import params


def _gallery(folder: Path, n: int = 300) -> Path:
    db = GalleryDB.open(folder)
    rows = [(Path(f"/images/{i}.png"), params(seed=i, prompt=f"a fox number {i} " * 12), None, None, 0,
             "sd35-studio") for i in range(n)]  # fmt: skip
    db.add_images(rows)
    db.close()
    return folder / DB_NAME


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _bad_header(f: Path) -> None:
    data = bytearray(f.read_bytes())
    data[:16] = b"not a database!!"
    f.write_bytes(data)


def _random_bytes(f: Path) -> None:
    f.write_bytes(random.Random(5).randbytes(64 * 1024))


def _truncated(f: Path) -> None:
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])


def _damaged_search_pages(f: Path) -> None:
    """Scribble over the pages of the full-text index (the b-tree pages of the images_fts shadow tables)."""
    conn = sqlite3.connect(f)
    pages = [row[0] for row in conn.execute("SELECT pageno FROM dbstat WHERE name LIKE 'images_fts%'")]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data, rnd = bytearray(f.read_bytes()), random.Random(1)
    for page in pages:
        for at in range((page - 1) * size + 100, page * size, 7):
            data[at] = rnd.randrange(256)
    f.write_bytes(data)


def _damaged_search_blobs(f: Path) -> None:
    """The index's b-tree intact but its contents garbage: only the full-text integrity check sees it."""
    conn = sqlite3.connect(f)
    conn.execute("UPDATE images_fts_data SET block = randomblob(length(block)) WHERE id > 10")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("damage", "detail"),
    [(_bad_header, "it is not an SQLite database"), (_random_bytes, "it is not an SQLite database"),
     (_truncated, "malformed"), (_damaged_search_pages, ""), (_damaged_search_blobs, "malformed")],
)  # fmt: skip
def test_a_damaged_database_is_one_error_and_stays_as_it_was(tmp_path, damage, detail):
    folder = tmp_path / "data"
    f = _gallery(folder)
    damage(f)
    before = _digest(f)
    with pytest.raises(GalleryOpenError) as caught:
        GalleryDB.open(folder)
    error = caught.value
    assert error.problem is OpenProblem.DAMAGED and error.damaged and error.path == f
    assert str(error).startswith(f"The gallery database {f} is damaged and cannot be read (")
    assert detail in str(error) and "\n" not in str(error)
    assert _digest(f) == before  # nothing written to the damaged file


def test_a_folder_in_place_of_the_database(tmp_path):
    (tmp_path / "data" / DB_NAME).mkdir(parents=True)
    with pytest.raises(GalleryOpenError, match="is a folder") as caught:
        GalleryDB.open(tmp_path / "data")
    assert caught.value.problem is OpenProblem.NOT_A_FILE and caught.value.damaged


def test_a_new_gallery_starts_next_to_the_damaged_file_set_aside(tmp_path):
    folder = tmp_path / "data"
    f = _gallery(folder)
    _truncated(f)
    before = _digest(f)
    with pytest.raises(GalleryOpenError):
        GalleryDB.open(folder)
    kept = set_aside(f)
    assert kept.name.startswith(f"{DB_NAME}.damaged-") and _digest(kept) == before and not f.exists()
    db = GalleryDB.open(folder)
    db.add_image(Path("/images/new.png"), params(seed=1, prompt="a lighthouse"))
    assert db.count() == 1 and len(db.row_keys(GalleryFilter(text="lighthouse"))) == 1
    db.close()
    assert _digest(kept) == before


def test_a_damaged_row_reads_as_unreadable_not_as_an_error(tmp_path):
    """Bytes that are not UTF-8 inside a row (the b-tree intact) no longer fail every query of the list."""
    folder = tmp_path / "data"
    f = _gallery(folder, 20)
    data = bytearray(f.read_bytes())
    at = data.index(b'"format"')
    data[at + 2] = 0xC0  # an invalid UTF-8 start byte in one row's parameters
    f.write_bytes(data)
    db = GalleryDB.open(folder)
    records = db.get([k.id for k in db.row_keys(GalleryFilter())])
    assert len(records) == 20 and sum(r.params.prompt == "" for r in records) == 1
    db.close()


# -- read-only and full disks, real ones: a mount namespace of our own (no root needed) ----------------------


def _can_unshare() -> bool:
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


needs_mounts = pytest.mark.skipif(not _can_unshare(), reason="needs user and mount namespaces (unshare -rm)")

_PROBE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from app.gallery.db import GalleryDB, GalleryOpenError
    try:
        GalleryDB.open(Path(sys.argv[1])).close()
        print("OPENED")
    except GalleryOpenError as exc:
        print(exc.problem.name, exc, sep="|")
""")


def _open_under(mounts: str, folder: Path) -> tuple[str, str]:
    """Open the gallery in `folder` in a process that first runs the shell `mounts` in its own namespace."""
    script = f'{mounts} && exec "$0" -c "$1" "$2"'
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script, sys.executable, _PROBE, str(folder)],
                          capture_output=True, text=True, env=os.environ | {"PYTHONPATH": os.getcwd()})  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    problem, _, message = proc.stdout.strip().partition("|")
    return problem, message


@needs_mounts
def test_a_read_only_database_file(tmp_path):
    f = _gallery(tmp_path / "data")
    problem, message = _open_under(f"mount --bind {f} {f} && mount -o remount,bind,ro {f}", tmp_path / "data")
    assert problem == "READ_ONLY"
    assert message == (f"The gallery database {f} cannot be written: the file, its folder or its disk is "
                       "read-only. Make it writable, then try again.")  # fmt: skip


@needs_mounts
@pytest.mark.parametrize("existing", [True, False])
def test_a_read_only_mount(tmp_path, existing):
    folder = tmp_path / "data"
    folder.mkdir()
    if existing:
        _gallery(folder)
    problem, message = _open_under(
        f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder}", folder
    )
    assert problem == "READ_ONLY" and "read-only" in message


@needs_mounts
@pytest.mark.parametrize("size", ["16k", "40k"])
def test_a_full_disk_at_first_start(tmp_path, size):
    folder = tmp_path / "data"
    folder.mkdir()
    problem, message = _open_under(f"mount -t tmpfs -o size={size} tmpfs {folder}", folder)
    assert problem == "DISK_FULL"
    assert message == (f"There is not enough disk space for the gallery database {folder / DB_NAME}: free "
                       "some space, then try again.")  # fmt: skip
