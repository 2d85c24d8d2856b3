"""The desktop bundle's files: the PyInstaller spec parses and names files that exist; desktop entry, AppStream
metainfo and icons agree with each other and with the app's desktop id. The real build is opt-in (slow)."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
APP_ID = "io.github.sd35studio.SD35Studio"
SPEC = PACKAGING / "sd35-studio.spec"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


class _Recorder:
    """Stands in for one of PyInstaller's spec classes and keeps what the spec passed to it."""

    calls: dict[str, tuple[tuple, dict]] = {}  # noqa: RUF012 - filled per test by _run_spec

    def __init__(self, *args, **kwargs):
        type(self).calls[type(self).__name__] = (args, kwargs)
        self.pure, self.scripts, self.binaries, self.datas = [], [], [], []


def _run_spec(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[tuple, dict]]:
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_submodules = lambda package: [f"{package}.stub"]
    for name in ("PyInstaller", "PyInstaller.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    _Recorder.calls = {}
    spec_globals = {"SPECPATH": str(PACKAGING), "__file__": str(SPEC), "__name__": "__main__"}
    for name in ("Analysis", "PYZ", "EXE", "COLLECT"):
        spec_globals[name] = type(name, (_Recorder,), {})
    exec(compile(SPEC.read_text(), str(SPEC), "exec"), spec_globals)
    return _Recorder.calls


def test_spec_builds_a_one_folder_app_from_files_that_exist(monkeypatch):
    calls = _run_spec(monkeypatch)
    assert set(calls) == {"Analysis", "PYZ", "EXE", "COLLECT"}  # COLLECT: one folder, not one file
    (scripts,), analysis = calls["Analysis"]
    for script in scripts:
        assert Path(script).is_file(), script
    assert "from app.cli.main import main" in Path(scripts[0]).read_text()
    for source, _dest in analysis["datas"]:
        assert Path(source).exists(), source
    assert any(dest == "app/resources" for _src, dest in analysis["datas"])
    assert "app.stub" in analysis["hiddenimports"]
    _args, exe = calls["EXE"]
    assert exe["name"] == "sd35-studio" and exe["exclude_binaries"] is True
    assert Path(exe["icon"]).is_file()
    assert calls["COLLECT"][1]["name"] == "sd35-studio"
    bundled = " ".join(src for src, _ in analysis["datas"]).lower()
    assert ".safetensors" not in bundled and ".pth" not in bundled  # weights are never bundled


def test_desktop_entry_names_the_binary_and_icon():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(PACKAGING / f"{APP_ID}.desktop", encoding="utf-8")
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application" and section["Icon"] == APP_ID
    assert section["Exec"].split()[0] == "sd35-studio"
    assert "Graphics" in section["Categories"].split(";")


def test_metainfo_matches_the_desktop_entry():
    root = ET.parse(PACKAGING / f"{APP_ID}.metainfo.xml").getroot()
    assert root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    assert root.find("launchable").text == f"{APP_ID}.desktop"
    assert root.find("provides/binary").text == "sd35-studio"
    assert root.findtext("metadata_license") == "CC0-1.0"
    assert root.findall("releases/release")[0].get("version") == _project_version()


def test_app_uses_the_same_desktop_id():
    source = (ROOT / "app" / "ui" / "window" / "settings_store.py").read_text()
    assert re.search(rf'DESKTOP_ID = "{re.escape(APP_ID)}"', source)


def test_icon_pngs_exist_at_every_size_and_match_the_svg():
    svg = PACKAGING / "icons" / f"{APP_ID}.svg"
    assert ET.parse(svg).getroot().get("viewBox") == "0 0 512 512"
    for size in ICON_SIZES:
        png = PACKAGING / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        with Image.open(png) as image:
            assert image.size == (size, size) and image.mode == "RGBA"
            assert image.getpixel((0, 0))[3] == 0  # transparent corner: the rounded square is drawn
            assert image.getpixel((size // 2, size // 2))[3] == 255


def test_shell_scripts_are_executable_and_parse():
    for script in ("build.sh", "smoke.sh"):
        path = PACKAGING / script
        assert os.access(path, os.X_OK), f"{path} is not executable"
        subprocess.run(["bash", "-n", str(path)], check=True)


def _project_version() -> str:
    match = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert match, "no version in pyproject.toml"
    return match.group(1)


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("SD35_BUILD_BUNDLE"), reason="set SD35_BUILD_BUNDLE=1 to build the bundle"
)
def test_bundle_builds_and_passes_the_smoke_script():
    subprocess.run([str(PACKAGING / "build.sh")], check=True, cwd=ROOT, timeout=3600)
    subprocess.run([str(PACKAGING / "smoke.sh")], check=True, cwd=ROOT, timeout=900)
