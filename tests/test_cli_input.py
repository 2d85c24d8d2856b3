"""Bad input on the command line: every option of every command, scanned from the parser itself, refuses values
it cannot use with exit 1 and one line on stderr; image bombs, stale temporary files and a reader that stops
early are handled as command-line tools do."""

import argparse
import dataclasses
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from app.cli.main import build_parser, main
from app.cli.options import REQUEST_OPTIONS, request_from_args
from app.cli.status import EXIT_CLOSED_STDOUT
from app.cli.values import INT64_MAX, FilePath, ImageFile, Integer, IntegerList, LoraArg, Real, Sides, Text
from app.inference.api.request import GenerationRequest
from tests.factory.snapshot import write_snapshot

FAST = ["--width", "32", "--height", "32", "--steps", "1"]
NOT_UTF8 = b"a\xff\xfeb".decode("utf-8", "surrogateescape")  # what Python makes of such argv bytes on Linux
HUGE = "9" * 400


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_snapshot(tmp_path_factory.mktemp("models") / "stable-diffusion-3.5-medium", "medium")


@pytest.fixture(scope="module")
def init_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("init") / "init.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(path)
    return path


def bad_values(action: argparse.Action) -> list[str]:
    """Values the option cannot use, from the kind that reads it. A new kind must be added here."""
    kind = action.type
    if action.choices is not None:
        return ["nan", "-1", HUGE, NOT_UTF8]  # no choice is spelled like these
    if isinstance(kind, Text | FilePath | ImageFile):
        return [NOT_UTF8]
    if isinstance(kind, Integer):
        out = ["nan", "inf", "1.5", HUGE, str(kind.minimum - 1), NOT_UTF8]
        return out + ([str(kind.maximum + 1)] if kind.maximum < INT64_MAX else [])
    if isinstance(kind, Real):
        return ["nan", "inf", "-inf", HUGE, str(kind.minimum - 1), NOT_UTF8] + (
            [str(kind.minimum)] if kind.exclusive else []
        )
    if isinstance(kind, IntegerList):
        return ["-1", f"7,{HUGE}", "nan", "7,,8", NOT_UTF8]
    if isinstance(kind, LoraArg):
        return [
            "missing.safetensors",
            "style.ckpt:0.5",
            "x.safetensors:nan",
            ":0.5",
            f"x.safetensors:{HUGE}",
            NOT_UTF8,
        ]
    if isinstance(kind, Sides):
        too_big = str(kind.maximum + 1)
        return ["1,2,3", "-1,0,0,0", f"0,0,0,{HUGE}", "nan,0,0,0", "inf,0,0,0", "0,1.5,0,0", f"0,0,{too_big},0",
                "0,0,0,0,0", NOT_UTF8]  # fmt: skip
    raise AssertionError(f"{action.option_strings or action.dest}: no bad values known for the kind {kind!r}")


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser, **sub.choices}


def _cases():
    for command, parser in _commands().items():
        for action in parser._actions:
            if action.nargs == 0 or isinstance(action, argparse._SubParsersAction):
                continue  # switches, --help, --version take no value
            name = action.option_strings[0] if action.option_strings else action.dest
            for value in bad_values(action):
                yield pytest.param(
                    command, action.option_strings[:1], value, id=f"{command} {name}={value[:12]!a}"
                )


def _base(command: str, tiny: Path, init_png: Path, tmp_path: Path) -> dict[str, list[str]]:
    """A command line that works, option by option, so that the bad value is the only thing wrong."""
    if command == "generate":
        return {
            "--model": [str(tiny)], "--prompt": ["x"], "--out": [str(tmp_path / "o.png")],
            "--init-image": [str(init_png)], "--width": ["32"], "--height": ["32"], "--steps": ["1"],
        }  # fmt: skip
    if command == "download":
        return {"--variant": ["medium"], "--dry-run": [], "--dest": [str(tmp_path / "dl")]}
    return {}


@pytest.mark.parametrize(("command", "flag", "value"), list(_cases()))
def test_every_option_refuses_values_it_cannot_use(
    command, flag, value, tiny, init_png, tmp_path, capsys, monkeypatch
):
    import app.main

    monkeypatch.setattr(app.main, "run_app", lambda **kw: pytest.fail(f"the window opened with {kw}"))
    options = _base(command, tiny, init_png, tmp_path)
    if flag:
        options[flag[0]] = [f"{flag[0]}={value}"]  # `=`: a value like -inf is never taken for an option
        argv = [a for f, values in options.items() for a in ([] if f == flag[0] else [f]) + values]
    else:
        argv = [a for f, values in options.items() for a in [f, *values]] + [value]
    code = main([command, *argv] if command else argv)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    if flag:
        assert flag[0] in err, err  # the sentence names the option


def test_the_table_covers_every_request_field():
    fields = {f.name for f in dataclasses.fields(GenerationRequest)} - {"warnings"}
    assert {o.name for o in REQUEST_OPTIONS} == fields


def test_request_from_options(tiny, init_png, tmp_path):
    args = build_parser().parse_args(
        ["generate", "--model", str(tiny), "--prompt", "p", "--out", "o.png", "--no-t5", "--init-image",
         str(init_png), "--slg-layers", "", "--negative-until", "0.5", "--seed", "18446744073709551615"]
    )  # fmt: skip
    assert request_from_args(args) == GenerationRequest(
        prompt="p", seed=2**64 - 1, slg_layers=(), negative_until=0.5, init_image=init_png, denoise=0.8,
        use_t5=False,
    )  # fmt: skip


def _cli(*args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.run([sys.executable, "-m", "app", *args], env=env, timeout=300, **kwargs)


def test_prompt_bytes_that_are_not_utf8(tiny, tmp_path):
    proc = _cli(
        "generate", "--model", str(tiny), "--prompt", b"a \xff\xfe cat", *FAST, "--out", str(tmp_path / "o.png"),
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip() == "sd35-studio generate: error: argument --prompt: is not valid UTF-8 text"
    assert not (tmp_path / "o.png").exists()


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` (1-bit grey): what Pillow's bomb check looks at."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [(_png_claiming(30000, 30000), "too large to read safely"), (b"not an image", "not a readable image")],
    ids=["bomb", "garbage"],
)
def test_init_image_that_cannot_be_read(tiny, tmp_path, content, message):
    init = tmp_path / "init.png"
    init.write_bytes(content)
    proc = _cli(
        "generate", "--model", str(tiny), "--prompt", "x", *FAST, "--init-image", str(init),
        "--out", str(tmp_path / "o.png"), capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"argument --init-image: {init}: " in proc.stderr and message in proc.stderr


def test_a_run_removes_the_temporary_files_an_interrupted_run_left(tiny, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale, fresh, finished = out / ".img-k2j4h.png.tmp", out / ".img-a8d3f.png.tmp", out / "old.png"
    for path in (stale, fresh, finished):
        path.write_bytes(b"\x89PNG partial")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    os.utime(finished, (an_hour_ago, an_hour_ago))
    proc = _cli(
        "generate", "--model", str(tiny), "--prompt", "x", *FAST, "--out", str(out / "new.png"),
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists()
    assert fresh.exists()  # it may belong to a save in flight in another run
    assert finished.exists() and (out / "new.png").is_file()


@pytest.mark.parametrize(
    ("args", "codes"),
    [
        (["download", "--variant", "medium", "--dry-run", "--dest", "{tmp}/dl"], {EXIT_CLOSED_STDOUT}),
        (["models", "{tmp}"], {EXIT_CLOSED_STDOUT}),
        (["models", "--json", "{tmp}"], {EXIT_CLOSED_STDOUT}),
        (
            ["generate", "--model", "{tiny}", "--prompt", "x", *FAST, "--json", "--out", "{tmp}/o.png"],
            {EXIT_CLOSED_STDOUT},
        ),
        (["generate", "--help"], {0, EXIT_CLOSED_STDOUT}),  # argparse itself ignores errors writing help
        (["--version"], {0, EXIT_CLOSED_STDOUT}),
    ],
    ids=lambda a: " ".join(a[:2]) if isinstance(a, list) else "",
)
def test_a_reader_that_stops_early_ends_the_command_quietly(tiny, tmp_path, args, codes):
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -0`: the reader is gone before the first line
    try:
        proc = _cli(
            *(a.format(tmp=tmp_path, tiny=tiny) for a in args),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(write_end)
    assert proc.returncode in codes, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert not (tmp_path / "o.png").exists()  # a job whose reader left stops, as a SIGPIPE'd tool would
