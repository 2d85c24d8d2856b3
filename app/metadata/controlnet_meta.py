"""ControlNets in image metadata: our JSON record, A1111's `ControlNet N` text, ComfyUI's ControlNet nodes, and
what recall says when a file is missing. Torch-free.

JSON, one object per ControlNet in `controlnets`:
  {"file", "file_name", "sha256", "type", "strength", "start", "end",
   "preprocess": {"kind", "blur_radius", "canny_low", "canny_high", "invert"}, "image", "image_sha256"}
`sha256` is the ControlNet file's full SHA-256 (its first 10 hex digits are A1111's short hash), `image_sha256`
the control image file's. Hashes are computed once per file (and per size and mtime) in a process.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.inference.api.control import CONTROL_TYPES, PREPROCESSORS, ControlPreprocess, ControlSpec

log = logging.getLogger(__name__)

_CHUNK = 4 << 20
_hashes: dict[tuple[str, int, int], Future[str | None]] = {}  # by (path, size, mtime), computed once
_hash_lock = threading.Lock()


def _hash_file(path: Path, size: int) -> str | None:
    if size > 1e9:
        log.info("hashing %s (%.1f GB) for the image metadata", path.name, size / 1e9)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        log.info("cannot hash %s: %s", path, exc)
        return None
    return digest.hexdigest()


def _hash_future(path: Path) -> Future[str | None] | None:
    try:
        path = Path(path).resolve()
        stat = path.stat()
    except OSError:
        return None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        if key in _hashes:
            return _hashes[key]
        future: Future[str | None] = Future()
        _hashes[key] = future

    def work() -> None:
        future.set_result(_hash_file(path, stat.st_size))

    # a daemon thread: a run that ends early is never kept waiting for a hash nobody needs any more
    threading.Thread(target=work, name="controlnet-hash", daemon=True).start()
    return future


def prefetch_hashes(specs: tuple[ControlSpec, ...]) -> None:
    """Start hashing the job's ControlNet files and control images in the background (an 8.65 GB file takes
    tens of seconds), so that saving the first image does not wait for it."""
    for s in specs:
        _hash_future(s.file)
        _hash_future(s.image)


def file_sha256(path: Path) -> str | None:
    """Hex SHA-256 of a file, computed once per (path, size, mtime); None when it cannot be read."""
    future = _hash_future(path)
    return None if future is None else future.result()


def with_hashes(specs: tuple[ControlSpec, ...]) -> tuple[ControlSpec, ...]:
    """The specs with their file and control-image hashes filled in (those already known are kept)."""
    return tuple(
        replace(
            s, file_hash=s.file_hash or file_sha256(s.file), image_hash=s.image_hash or file_sha256(s.image)
        )
        for s in specs
    )


# ------------------------------------------------------------------------------------------------ our JSON


def controlnet_to_dict(spec: ControlSpec) -> dict[str, Any]:
    p = spec.preprocess
    return {
        "file": str(spec.file),
        "file_name": Path(spec.file).name,
        "sha256": spec.file_hash,
        "type": spec.control_type,
        "strength": spec.strength,
        "start": spec.start,
        "end": spec.end,
        "preprocess": {
            "kind": p.kind,
            "blur_radius": p.blur_radius,
            "canny_low": p.canny_low,
            "canny_high": p.canny_high,
            "invert": p.invert,
        },
        "image": str(spec.image),
        "image_sha256": spec.image_hash,
    }


def _number(data: dict, key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"ControlNet {key} is not a number")
    return float(value)


def _text(data: dict, key: str, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"ControlNet {key} is not a text")
    return value


def controlnet_from_dict(data: object) -> ControlSpec:
    """One record of our JSON back into a ControlSpec; ValueError with a short reason when it is not one."""
    if not isinstance(data, dict):
        raise ValueError("a ControlNet entry is not an object")
    kind = _text(data, "type", required=False)
    if kind is not None and kind not in CONTROL_TYPES:
        raise ValueError(f"unknown ControlNet type {kind!r}")
    pre = data.get("preprocess") or {}
    if not isinstance(pre, dict):
        raise ValueError("ControlNet preprocess is not an object")
    pre_kind = pre.get("kind", "none")
    if pre_kind not in PREPROCESSORS:
        raise ValueError(f"unknown control preprocessing {pre_kind!r}")
    preprocess = ControlPreprocess(
        kind=pre_kind,
        blur_radius=_number(pre, "blur_radius", ControlPreprocess.blur_radius),
        canny_low=_number(pre, "canny_low", ControlPreprocess.canny_low),
        canny_high=_number(pre, "canny_high", ControlPreprocess.canny_high),
        invert=bool(pre.get("invert", False)),
    )
    return ControlSpec(
        file=Path(_text(data, "file")),
        image=Path(_text(data, "image")),
        strength=_number(data, "strength", 1.0),
        start=_number(data, "start", 0.0),
        end=_number(data, "end", 1.0),
        control_type=kind,
        preprocess=preprocess,
        file_hash=_text(data, "sha256", required=False),
        image_hash=_text(data, "image_sha256", required=False),
    )


def controlnets_from_json(value: object) -> tuple[ControlSpec, ...]:
    if not isinstance(value, list):
        raise ValueError("controlnets is not a list")
    return tuple(controlnet_from_dict(v) for v in value)


# ------------------------------------------------------------------------------------------------ A1111

# sd-webui-controlnet's module names for what our preprocessors do
_A1111_MODULES = {"none": "none", "blur": "blur_gaussian", "canny": "canny", "depth": "none"}


def a1111_controlnet_fields(specs: tuple[ControlSpec, ...]) -> dict[str, str]:
    """`ControlNet 0: "Module: canny, Model: sd3.5_large_controlnet_canny [4bc5cf94], Weight: 0.8, ..."`, the
    unit text sd-webui-controlnet writes (its model hash: 8 hex digits), one key per ControlNet."""
    out = {}
    for i, s in enumerate(specs):
        p = s.preprocess
        model = Path(s.file).stem + (f" [{s.file_hash[:8]}]" if s.file_hash else "")
        pairs = [("Module", _A1111_MODULES[p.kind]), ("Model", model), ("Weight", f"{s.strength:g}")]
        if p.kind == "canny":
            pairs += [("Threshold A", f"{p.canny_low:g}"), ("Threshold B", f"{p.canny_high:g}")]
        elif p.kind == "blur":
            pairs += [("Threshold A", f"{p.blur_radius:g}")]
        pairs += [("Guidance Start", f"{s.start:g}"), ("Guidance End", f"{s.end:g}")]
        if s.control_type:
            pairs.append(("Control Type", s.control_type))
        if p.kind == "depth" and p.invert:
            pairs.append(("Invert", "True"))
        out[f"ControlNet {i}"] = ", ".join(f"{k}: {v}" for k, v in pairs)
    return out


# ------------------------------------------------------------------------------------------------ recall


def controlnet_warnings(specs: tuple[ControlSpec, ...]) -> list[str]:
    """Why recalled ControlNets will not run as they did: a missing file, a changed file or control image."""
    out = []
    for s in specs:
        if not Path(s.file).is_file():
            out.append(f"ControlNet file {Path(s.file).name} is missing ({s.file}): choose it again.")
        if s.image == Path(""):  # read from A1111 text, which never holds it: the reader's note says so
            continue
        if not Path(s.image).is_file():
            out.append(f"Control image {Path(s.image).name} is missing ({s.image}): choose it again.")
        elif s.image_hash and file_sha256(s.image) not in (None, s.image_hash):
            out.append(f"Control image {Path(s.image).name} has changed since the image was made.")
    return out


# ------------------------------------------------------------------------------------------------ ComfyUI

COMFY_NOTE = (
    "SD3.5 Studio encodes control images as Stability's reference does (Lanczos resize; canny x*255*0.5+0.5 "
    "and depth 2x-1 fed to the VAE, the depth map as given; the position table cropped from the checkpoint). "
    "ComfyUI resizes with nearest-exact, feeds 255x for canny and an inverted map for depth, and synthesises "
    "the position table: this graph is the closest ComfyUI equivalent, not an exact copy. Preprocessing here "
    "uses ComfyUI's own Canny / ImageBlur / ImageInvert nodes, which differ from ours in detail."
)


def add_comfy_controlnets(
    graph: Any, link, params: Any, vae: list, positive: list, negative: list, files: Any = None
) -> tuple:
    """ControlNetLoader + LoadImage [+ preprocessing] + ControlNetApplyAdvanced per ControlNet, chained on the
    conditioning links `positive` and `negative`; returns the links the sampler takes instead. `graph.add` and
    `link` are comfy_graph's; with any ControlNet, a note for the workflow is added to `graph.notes`. `files`
    (ComfyFiles) may carry a server's ControlNet names and uploaded control images; else the files' own names."""
    specs = params.request.controlnets
    names = tuple(getattr(files, "controlnets", ()))
    images = tuple(getattr(files, "control_images", ()))
    for i, s in enumerate(specs):
        name = names[i] if i < len(names) else Path(s.file).name
        loader = graph.add("ControlNetLoader", control_net_name=name)
        shown = images[i] if i < len(images) else str(s.image).replace("\\", "/").rsplit("/", 1)[-1]
        image = graph.add("LoadImage", image=shown)
        p = s.preprocess
        if p.kind == "canny":  # ComfyUI's thresholds are fractions of its (normalised) gradient
            low, high = (min(0.99, max(0.01, round(t / 1020, 2))) for t in (p.canny_low, p.canny_high))
            image = graph.add("Canny", image=link(image), low_threshold=low, high_threshold=max(high, low))
        elif p.kind == "blur":
            radius = max(1, min(31, round(3 * p.blur_radius)))
            image = graph.add(
                "ImageBlur", image=link(image), blur_radius=radius, sigma=min(10.0, p.blur_radius)
            )
        elif p.kind == "depth" and not p.invert:
            image = graph.add("ImageInvert", image=link(image))  # ComfyUI inverts every depth map: undo it
        apply = graph.add(
            "ControlNetApplyAdvanced", positive=positive, negative=negative, control_net=link(loader),
            image=link(image), strength=s.strength, start_percent=s.start, end_percent=s.end, vae=vae,
        )  # fmt: skip
        positive, negative = link(apply, 0), link(apply, 1)
    if specs:
        graph.notes.append(COMFY_NOTE)
    return positive, negative


_COMFY_APPLY = ("ControlNetApplyAdvanced", "ControlNetApplySD3")


def comfy_controlnets(node_of, ref: object, which: str) -> tuple[object, tuple[ControlSpec, ...]]:
    """Walk back from a sampler's `positive` or `negative` link through ControlNet apply nodes: (the link to the
    conditioning before them, the ControlNets in the order they were applied). `node_of(link)` gives
    (node id, node) or None (comfy_recall's walker)."""
    specs: list[ControlSpec] = []
    seen: set[str] = set()
    while (
        (found := node_of(ref)) is not None
        and found[1]["class_type"] in _COMFY_APPLY
        and found[0] not in seen
    ):
        seen.add(found[0])
        inputs = found[1].get("inputs", {})
        specs.append(_comfy_spec(node_of, inputs))
        ref = inputs.get(which)
    return ref, tuple(reversed(specs))


def _comfy_spec(node_of, inputs: dict) -> ControlSpec:
    loader = node_of(inputs.get("control_net"))
    name = loader[1].get("inputs", {}).get("control_net_name") if loader else None
    preprocess = ControlPreprocess()
    image_node = node_of(inputs.get("image"))
    depth_inverted = True  # ComfyUI inverts depth maps; an ImageInvert before it undoes that
    while image_node is not None and image_node[1]["class_type"] in ("Canny", "ImageBlur", "ImageInvert"):
        kind, values = image_node[1]["class_type"], image_node[1].get("inputs", {})
        if kind == "Canny":
            low, high = float(values["low_threshold"]) * 1020, float(values["high_threshold"]) * 1020
            preprocess = ControlPreprocess("canny", canny_low=round(low), canny_high=round(high))
        elif kind == "ImageBlur":
            preprocess = ControlPreprocess("blur", blur_radius=float(values["sigma"]))
        else:
            depth_inverted = False
        image_node = node_of(values.get("image"))
    image = image_node[1].get("inputs", {}).get("image") if image_node else None
    if not isinstance(name, str) or not isinstance(image, str):
        raise ValueError("a ControlNet node without its loader or image")
    if preprocess.kind == "none" and "depth" in name.lower():
        preprocess = ControlPreprocess("depth", invert=depth_inverted)
    return ControlSpec(
        Path(name), Path(image), float(inputs.get("strength", 1.0)), float(inputs.get("start_percent", 0.0)),
        float(inputs.get("end_percent", 1.0)), preprocess=preprocess,
    )  # fmt: skip
