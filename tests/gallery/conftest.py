"""Gallery test fixtures: data folders under the test's tmp_path, and a panel over a filled gallery."""

from __future__ import annotations

import time

import pytest

from app.gallery.db import GalleryDB
from app.gallery.store import save_finished_image
from app.metadata.file_names import OutputTarget
from tests.gallery.helpers import params, pixels

PROMPTS = ("a red fox in fresh snow, golden hour", "an old lighthouse on a cliff, stormy sky",
           "a cozy reading nook with a cat, watercolour")  # fmt: skip


@pytest.fixture(autouse=True)
def _private_data_home(tmp_path, monkeypatch):
    """QStandardPaths and the system trash (XDG) point into this test's folder, never the user's."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


@pytest.fixture
def filled(tmp_path):
    """A gallery of 13 images in three jobs (6, 6, 1), the newest job last; returns (data dir, output)."""
    data, output = tmp_path / "data", OutputTarget(tmp_path / "out")
    db = GalleryDB.open(data)
    start = time.time() - 3600
    for i in range(13):
        job = i // 6
        p = params(seed=1000 + i, prompt=PROMPTS[job], cfg=(3.5, 4.5, 5.0)[job])
        save_finished_image(db, output, pixels(i, 48), p, job_id=f"job{job}",
                            created=start + job * 600 + i)  # fmt: skip
    db.close()
    return data, output


@pytest.fixture
def panel(qtbot, filled):
    from app.ui.gallery.panel import GalleryPanel

    data, output = filled
    widget = GalleryPanel(data, output)
    qtbot.addWidget(widget)
    widget.resize(900, 700)
    widget.show()
    yield widget
    widget.shutdown()
