"""`sd35-studio engines test URL [--json]`: can this ComfyUI server be SD3.5 Studio's engine?

Connects, reads /system_stats and /object_info, and prints: reachable, the ComfyUI version, device and VRAM,
the SD3.5 checkpoints, text encoders, LoRAs and ControlNets the server lists, whether it sends previews, the
nodes our graphs need that it lacks. Exit 1 with one line when it cannot connect."""

from __future__ import annotations

import argparse
import json
import sys
import time

from app.cli.status import EXIT_ERROR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="engines_command", parser_class=type(parser))
    test = sub.add_parser("test", help="connect to a ComfyUI server and report what it can run")
    test.add_argument("url", metavar="URL", help="the server, http(s)://host:port")
    test.add_argument("--json", action="store_true", help="print one JSON object")
    test.add_argument("--token", metavar="TOKEN", help="send 'Authorization: Bearer TOKEN' (cloud machines)")


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB"


def _list(names) -> str:
    return ", ".join(names) if names else "none"


def report_lines(info, seconds: float) -> list[str]:
    labels = {"clip_l": "CLIP-L", "clip_g": "CLIP-G", "t5": "T5-XXL"}
    encoders = "; ".join(f"{label} {info.encoder(role) or 'missing'}" for role, label in labels.items())
    others = len(info.checkpoints) - len(info.sd35_checkpoints)
    if info.previews_by_default:
        previews = f"on ({info.preview_method})"
    else:
        previews = (
            "off by default (started without --preview-method); SD3.5 Studio asks for them with each job"
        )
    lines = [
        f"reachable: yes ({info.url}, {seconds * 1000:.0f} ms)",
        f"ComfyUI: {info.comfyui_version}",
        *(f"device: {d.name} ({d.type}), VRAM {_gb(d.vram_total)} total, {_gb(d.vram_free)} free"
          for d in info.devices),
        f"SD3.5 checkpoints: {_list(info.sd35_checkpoints)}" + (f" (+{others} other)" if others else ""),
        f"text encoders: {encoders}",
        f"LoRAs: {_list(info.loras)}",
        f"ControlNets: {_list(info.controlnets)}",
        f"previews: {previews}",
        f"missing nodes: {_list(info.to_json()['missing_nodes'])}",
    ]  # fmt: skip
    return lines + [f"warning: {w}" for w in info.warnings]


def run_engines(args: argparse.Namespace) -> int:
    from app.remote.capabilities import read_capabilities
    from app.remote.errors import RemoteError
    from app.remote.http import ComfyHttp

    if args.engines_command != "test":
        sys.stderr.write("sd35-studio: error: say what to do: sd35-studio engines test URL\n")
        return EXIT_ERROR
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    started = time.perf_counter()
    try:
        info = read_capabilities(ComfyHttp(args.url, headers))
    except (RemoteError, ValueError) as exc:
        if args.json:
            print(json.dumps({"reachable": False, "error": str(exc)}), flush=True)  # noqa: T201 - CLI output
        sys.stderr.write(f"sd35-studio: error: {exc}\n")
        return EXIT_ERROR
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps({"reachable": True, "seconds": round(seconds, 4), **info.to_json()}))  # noqa: T201
    else:
        print("\n".join(report_lines(info, seconds)))  # noqa: T201
    return 0
