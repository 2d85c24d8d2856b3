"""`sd35-studio engines test URL [--json]`: can this ComfyUI server be SD3.5 Studio's engine?

Connects, reads /system_stats and /object_info, and prints: reachable, the ComfyUI version, device and VRAM,
the SD3.5 checkpoints, text encoders, LoRAs and ControlNets the server lists, whether it sends previews, the
nodes our graphs need that it lacks. Exit 1 with one line when it cannot connect."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.cli.status import EXIT_ERROR
from app.remote.engine_list import TOKEN_ENV


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="engines_command", parser_class=type(parser))
    test = sub.add_parser("test", help="connect to a ComfyUI server and report what it can run")
    test.add_argument("url", metavar="URL", help="the server, http(s)://host:port")
    test.add_argument("--json", action="store_true", help="print one JSON object")
    test.add_argument("--token", metavar="TOKEN", help="send 'Authorization: Bearer TOKEN' (cloud machines)")
    test.add_argument("--engine-token-file", metavar="FILE", type=Path, default=None,
                      help="read the token from FILE (private: mode 0600); default: the token stored for URL in "
                           f"Settings ▸ Engines, else ${TOKEN_ENV}")  # fmt: skip


def run_engines(args: argparse.Namespace) -> int:
    from app.cli.engine_auth import engine_headers
    from app.remote.report import check_server

    if args.engines_command != "test":
        sys.stderr.write("sd35-studio: error: say what to do: sd35-studio engines test URL\n")
        return EXIT_ERROR
    try:
        headers = engine_headers(args.url, args.token, args.engine_token_file)
    except ValueError as exc:
        sys.stderr.write(f"sd35-studio: error: {exc}\n")
        return EXIT_ERROR
    report = check_server(args.url, headers)
    if report.info is None:
        if args.json:
            print(json.dumps({"reachable": False, "error": report.error}), flush=True)  # noqa: T201 - CLI output
        sys.stderr.write(f"sd35-studio: error: {report.error}\n")
        return EXIT_ERROR
    if args.json:
        print(json.dumps({"reachable": True, "seconds": round(report.seconds, 4), **report.info.to_json()}))  # noqa: T201
    else:
        print("\n".join(report.lines()))  # noqa: T201
    return 0
