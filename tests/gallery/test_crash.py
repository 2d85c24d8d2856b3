"""Killing the app in the middle of a save corrupts neither the database nor any other image."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from app.gallery.db import GalleryDB
from app.gallery.filters import GalleryFilter
from app.metadata.recall import read_metadata
from app.metadata.unfinished_saves import remove_stale_temp_files

CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from app.gallery.db import GalleryDB
    from app.gallery.store import save_finished_image
    from app.metadata.file_names import OutputTarget
    from tests.gallery.helpers import params, pixels

    mode, data, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    db = GalleryDB.open(data)
    saved = 0

    def stall(what):
        print(what, flush=True)
        time.sleep(60)  # the parent kills us here

    if mode == "file":
        real_fsync, calls = os.fsync, [0]
        def fsync(fd):  # per image: the PNG, then its folder
            calls[0] += 1
            if calls[0] == 7:
                stall("WRITING")  # the 4th PNG is written to its temporary file, not yet renamed
            real_fsync(fd)
        os.fsync = fsync
    else:
        def trace(sql):
            if sql.startswith("INSERT INTO images") and saved == 3:
                stall("INSERTING")  # inside the 4th record's transaction
        db._conn.set_trace_callback(trace)

    for i in range(10):
        record = save_finished_image(db, OutputTarget(out), pixels(i, 96), params(seed=100 + i), job_id="sweep")
        saved += 1
        print("SAVED", record.path, flush=True)
""")


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("mode", "marker"), [("file", "WRITING"), ("db", "INSERTING")])
def test_sigkill_mid_save_leaves_database_and_images_intact(tmp_path, mode, marker):
    data, out = tmp_path / "data", tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(data), str(out)], stdout=subprocess.PIPE,
                            text=True, cwd=os.getcwd())  # fmt: skip
    saved = []
    try:
        for line in proc.stdout:
            if line.startswith("SAVED"):
                saved.append(line.split(" ", 1)[1].strip())
            if line.strip() == marker:
                break
        else:
            pytest.fail(f"the child ended before {marker}: {proc.wait()}")
        before = {p: _sha(Path(p)) for p in saved}
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(saved) == 3

    db = GalleryDB.open(data)
    assert db.integrity_ok()
    records = db.get([k.id for k in db.row_keys(GalleryFilter(newest_first=False))])
    assert [str(r.path) for r in records] == saved
    for record in records:
        assert _sha(record.path) == before[str(record.path)]
        with Image.open(record.path) as im:
            im.load()  # the whole file decodes
        assert read_metadata(record.path).params == record.params
    finished = sorted(out.rglob("*.png"))
    for path in finished:
        with Image.open(path) as im:
            im.load()
    if mode == "file":
        assert [str(p) for p in finished] == sorted(saved)  # the interrupted image never got its name
        assert remove_stale_temp_files(out) == 1
    else:
        assert len(finished) == 4  # the 4th PNG is complete; only its record was lost (Import finds it)
    assert sorted(p for p in out.rglob("*") if p.is_file()) == finished
    db.add_image(out / "after.png", records[0].params)  # and the database takes writes again
    db.close()
