"""A job's LoRA and ControlNet files by the server's own names: the user's files are never uploaded (issue 17's
safety rule: only the job's own images leave the machine), so the server must already have each one.

A file is matched by its name (the server lists `sub/name.safetensors`; the same name in a subfolder counts).
Where the server can tell what its file is, it is checked too: `/view_metadata/<folder>` gives a safetensors
file's metadata, and kohya's trainer writes the hash of the bytes after the header there (`sshs_model_hash`,
also `modelspec.hash_sha256`): A1111's LoRA hash, which we compute from the local file the same way. A server
file with another hash is a different file of the same name and is refused; a file without one is taken by name.
"""

from __future__ import annotations

import dataclasses
import logging
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from app.inference.api.request import GenerationRequest
from app.metadata.comfy_graph import ComfyFiles
from app.remote.capabilities import ServerInfo
from app.remote.errors import RemoteError, ServerMissing

log = logging.getLogger(__name__)

_HASH_KEYS = ("sshs_model_hash", "modelspec.hash_sha256")
Metadata = Callable[
    [str, str], dict | None
]  # (folder, server name) -> the file's safetensors metadata or None


def server_metadata(http) -> Metadata:
    """`/view_metadata/<folder>?filename=` of a ComfyHttp; None where the server has none or will not say."""

    def read(folder: str, name: str) -> dict | None:
        query = urllib.parse.urlencode({"filename": name})
        try:
            answer = http.get_json(f"/view_metadata/{folder}?{query}", f"the metadata of {name}")
        except RemoteError as exc:  # 404: no metadata (or an older server without the route)
            log.debug("no metadata for %s/%s: %s", folder, name, exc)
            return None
        return answer if isinstance(answer, dict) else None

    return read


def tensor_hash_of(metadata: dict | None) -> str | None:
    """The hash of the tensor bytes a trainer wrote into the file's metadata (hex, lower case), or None."""
    for key in _HASH_KEYS:
        value = (metadata or {}).get(key)
        if isinstance(value, str) and len(value.removeprefix("0x")) >= 12:
            return value.removeprefix("0x").lower()
    return None


def _local_tensor_hash(path: Path, known: str | None) -> str | None:
    """A1111's LoRA hash (12 hex) of the local file: the one known already, else read it; None if unreadable."""
    if known:
        return known.lower()
    from app.inference.lora.hashing import lora_hashes  # torch-free; reads the file once, cached

    try:
        return lora_hashes(path)[1].lower()
    except (OSError, ValueError):
        return None


def match_file(
    what: str, folder: str, local: Path, known_hash: str | None, listed: tuple[str, ...], metadata: Metadata,
    url: str,
) -> str:  # fmt: skip
    """The server's name for the local file `local`; ServerMissing (one sentence naming it) when it lacks it."""
    name = Path(local).name
    candidates = [n for n in listed if n.rsplit("/", 1)[-1] == name] or [
        n for n in listed if n.rsplit("/", 1)[-1].lower() == name.lower()
    ]
    if not candidates:
        shown = ", ".join(listed[:8]) + (", …" if len(listed) > 8 else "") if listed else "none"
        raise ServerMissing(
            f"{url} has no {what} {name} (its {what}s: {shown}); SD3.5 Studio never uploads your model files, "
            f"so copy it into the server's models/{folder} or run this job on this machine"
        )
    candidates.sort(key=lambda n: (n.count("/"), n))  # the top-level file first
    by_name: list[str] = []
    for candidate in candidates:
        theirs = tensor_hash_of(metadata(folder, candidate))
        if theirs is None:
            by_name.append(candidate)
            continue
        ours = _local_tensor_hash(Path(local), known_hash)
        if ours is None or theirs.startswith(ours[:12]):
            return candidate  # the server's file is ours (or ours cannot be read: its name decides)
        log.info("%s: the server's %s has another hash (%s, ours %s)", url, candidate, theirs[:12], ours[:12])
    if by_name:
        return by_name[0]
    raise ServerMissing(
        f"{url} has a {what} named {name}, but it is a different file (its hash differs from yours); "
        f"copy yours into the server's models/{folder} under another name or run this job on this machine"
    )


def with_server_files(
    info: ServerInfo, req: GenerationRequest, files: ComfyFiles, metadata: Metadata
) -> ComfyFiles:
    """`files` with the server's names of the job's LoRAs and ControlNets (ServerMissing for a missing one)."""
    loras = tuple(
        match_file("LoRA", "loras", lora.path, lora.short_hash, info.loras, metadata, info.url)
        for lora in req.loras
    )
    controlnets = tuple(
        match_file("ControlNet", "controlnet", spec.file, None, info.controlnets, metadata, info.url)
        for spec in req.controlnets
    )
    return dataclasses.replace(files, loras=loras, controlnets=controlnets)
