"""What a connection test says about a server, in lines for people: the CLI's `engines test` and the window's
Settings ▸ Engines dialog print the same report. Torch-free and Qt-free."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from app.remote.capabilities import ServerInfo, read_capabilities
from app.remote.errors import RemoteError, TlsFailure
from app.remote.http import ComfyHttp

log = logging.getLogger(__name__)

_ENCODER_LABELS = {"clip_l": "CLIP-L", "clip_g": "CLIP-G", "t5": "T5-XXL"}


@dataclass(frozen=True, slots=True)
class ConnectionReport:
    url: str
    info: ServerInfo | None  # None: it could not be reached (or answered nonsense)
    seconds: float
    error: str = ""
    tls_problem: str = ""  # how the TLS handshake failed (TlsFailure.kind), "" when it did not

    @property
    def reachable(self) -> bool:
        return self.info is not None

    def lines(self) -> list[str]:
        if self.info is None:
            return [f"reachable: no — {self.error}"]
        return report_lines(self.info, self.seconds)


def check_server(
    url: str, headers: Mapping[str, str] | None = None, timeout: float = 10.0
) -> ConnectionReport:
    """Connect and read the capabilities; never raises for a server that is away or broken."""
    started = time.perf_counter()
    try:
        info = read_capabilities(ComfyHttp(url, headers, timeout))
    except (RemoteError, ValueError) as exc:
        kind = exc.kind if isinstance(exc, TlsFailure) else ""
        return ConnectionReport(url, None, time.perf_counter() - started, str(exc), kind)
    return ConnectionReport(info.url, info, time.perf_counter() - started)


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB"


def _list(names) -> str:
    return ", ".join(names) if names else "none"


def previews_line(info: ServerInfo) -> str:
    if info.previews_by_default:
        return f"on ({info.preview_method})"
    return "off by default (started without --preview-method); SD3.5 Studio asks for them with each job"


def report_lines(info: ServerInfo, seconds: float) -> list[str]:
    encoders = "; ".join(
        f"{label} {info.encoder(role) or 'missing'}" for role, label in _ENCODER_LABELS.items()
    )
    others = len(info.checkpoints) - len(info.sd35_checkpoints)
    lines = [
        f"reachable: yes ({info.url}, {seconds * 1000:.0f} ms)",
        f"ComfyUI: {info.comfyui_version}",
        *(f"device: {d.name} ({d.type}), VRAM {_gb(d.vram_total)} total, {_gb(d.vram_free)} free"
          for d in info.devices),
        f"SD3.5 checkpoints: {_list(info.sd35_checkpoints)}" + (f" (+{others} other)" if others else ""),
        f"text encoders: {encoders}",
        f"LoRAs: {_list(info.loras)}",
        f"ControlNets: {_list(info.controlnets)}",
        f"previews: {previews_line(info)}",
        f"missing nodes: {_list(info.to_json()['missing_nodes'])}",
    ]  # fmt: skip
    return lines + [f"warning: {w}" for w in info.warnings]
