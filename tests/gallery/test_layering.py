"""The gallery's plain-Python layer imports neither torch nor Qt; its widgets do not pull torch in."""

import subprocess
import sys


def imported_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(' '.join(m for m in ('torch', 'PySide6') if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_gallery_imports_neither_torch_nor_qt():
    code = (
        "import importlib, pkgutil, app.gallery as g\n"
        "for m in pkgutil.walk_packages(g.__path__, 'app.gallery.'):\n"
        "    importlib.import_module(m.name)\n"
    )
    assert imported_after(code) == set()


def test_gallery_widgets_do_not_import_torch():
    code = "import app.ui.gallery.panel, app.ui.gallery.compare_view"
    assert imported_after(code) == {"PySide6"}
