"""The engine never pulls in Qt: the UI depends on the engine, never the other way round."""

import subprocess
import sys


def test_inference_does_not_import_qt():
    code = (
        "import sys, pkgutil, importlib, app.inference as p\n"
        "for m in pkgutil.walk_packages(p.__path__, 'app.inference.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('PySide6' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
