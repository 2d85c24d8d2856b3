"""Reading safetensors files: headers without tensor data, state dicts by prefix, modules built on `meta`.

Modules are always constructed on the `meta` device and the file's tensors are assigned into them, so a
multi-GB network is never randomly initialised nor held twice in memory.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from app.inference.api.errors import CheckpointMismatchError, ModelFileError

log = logging.getLogger(__name__)

_MAX_HEADER_BYTES = 100 * 1024 * 1024
_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}


_TORCH_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


_INTEGER_DTYPES = frozenset({"I64", "I32", "I16", "I8", "U8", "BOOL"})


@dataclass(frozen=True, slots=True)
class TensorInfo:
    dtype: str  # safetensors dtype name: "F16", "BF16", "F32", "F8_E4M3", ...
    shape: tuple[int, ...]
    offsets: tuple[int, int] = (0, 0)  # byte range inside the data section
    shard: int = 0  # index into SafetensorsHeader.shards for headers merged from a sharded index

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * _DTYPE_BYTES.get(self.dtype, 4)


@dataclass(frozen=True, slots=True)
class SafetensorsHeader:
    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_start: int = 0  # file offset of the data section
    # Sharded checkpoints (`*.safetensors.index.json`): (shard file, its data_start) per TensorInfo.shard.
    shards: tuple[tuple[Path, int], ...] = ()

    @property
    def files(self) -> tuple[Path, ...]:
        """The files holding the tensors: the shards of an index, else the file itself."""
        return tuple(p for p, _ in self.shards) if self.shards else (self.path,)

    def num_params(self, prefix: str = "") -> int:
        return sum(info.numel for key, info in self.tensors.items() if key.startswith(prefix))

    def bytes_by_dtype(self, prefix: str = "") -> dict[str, int]:
        """Stored bytes per safetensors dtype name for the tensors under `prefix`."""
        out: dict[str, int] = {}
        for key, info in self.tensors.items():
            if key.startswith(prefix):
                out[info.dtype] = out.get(info.dtype, 0) + info.nbytes
        return out

    def keys_with_prefix(self, prefix: str) -> list[str]:
        return [k for k in self.tensors if k.startswith(prefix)]

    def shape(self, key: str) -> tuple[int, ...]:
        return self.tensors[key].shape

    def num_bytes(self, prefix: str = "") -> int:
        total = 0
        for key, info in self.tensors.items():
            if key.startswith(prefix):
                n = 1
                for s in info.shape:
                    n *= s
                total += n * _DTYPE_BYTES.get(info.dtype, 4)
        return total


PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
# `model.safetensors.index.json`, and the fp16 variant index `model.safetensors.index.fp16.json`
_INDEX_NAME = re.compile(r"\.safetensors\.index(\.[A-Za-z0-9_-]+)?\.json$", re.IGNORECASE)


def is_index_file(path: str | Path) -> bool:
    """A sharded checkpoint's index (`*.safetensors.index.json`)."""
    return _INDEX_NAME.search(Path(path).name) is not None


def read_header(path: str | Path) -> SafetensorsHeader:
    """Parse a safetensors header (names, dtypes, shapes, metadata) and check the file is complete.

    A `*.safetensors.index.json` (a sharded checkpoint) gives one header merged from all its shards."""
    path = Path(path)
    if is_index_file(path):
        return _read_index(path)
    if not path.is_file():
        what = "not a regular file" if path.exists() else "file not found"
        raise ModelFileError(f"{path}: {what}")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelFileError(
            f"{path}: pickle-based weight file ({path.suffix}), refused: opening it could run arbitrary code. "
            "Use the .safetensors version of this model"
        )
    if path.suffix.lower() != ".safetensors":
        raise ModelFileError(
            f"{path}: only .safetensors files are supported (pickled .ckpt/.pt files are not)"
        )
    try:
        size = path.stat().st_size
        if size == 0:
            raise ModelFileError(f"{path}: file is empty (0 bytes); download it again")
        with path.open("rb") as f:
            raw_len = f.read(8)
            if len(raw_len) < 8:
                raise ModelFileError(f"{path}: file is empty or truncated (no safetensors header)")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len <= 0 or header_len > _MAX_HEADER_BYTES:
                raise ModelFileError(f"{path}: not a safetensors file, or its header is corrupt")
            if header_len > size - 8:
                start = f.read(1)
                if start != b"{":
                    raise ModelFileError(f"{path}: not a safetensors file, or its header is corrupt")
                raise ModelFileError(
                    f"{path}: file is truncated (it ends inside its header); download it again"
                )
            raw = f.read(header_len)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw)
    except (
        UnicodeDecodeError,
        json.JSONDecodeError,
        RecursionError,
    ) as exc:  # RecursionError: absurd nesting
        raise ModelFileError(f"{path}: corrupt safetensors header ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: corrupt safetensors header")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{path}: corrupt safetensors header (metadata is not a mapping)")
    tensors: dict[str, TensorInfo] = {}
    for key, entry in header.items():
        info = _tensor_info(entry)
        if isinstance(info, str):
            raise ModelFileError(f"{path}: corrupt safetensors header (tensor {key[:200]!r}: {info})")
        tensors[key] = info
    _check_no_overlap(path, tensors)
    data_end = max((info.offsets[1] for info in tensors.values()), default=0)
    if 8 + header_len + data_end > size:
        missing = 8 + header_len + data_end - size
        raise ModelFileError(f"{path}: file is truncated ({missing:,} bytes missing); download it again")
    return SafetensorsHeader(path, tensors, {str(k): str(v) for k, v in metadata.items()}, 8 + header_len)


def _whole(value: object) -> bool:
    return type(value) is int and value >= 0  # not bool, float or text: the format stores plain integers


def _tensor_info(entry: object) -> TensorInfo | str:
    """A header entry as TensorInfo, or what is wrong with it."""
    if not isinstance(entry, dict):
        return "not a tensor entry"
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not (isinstance(dtype, str) and dtype in _TORCH_DTYPES):
        return f"unknown dtype {str(dtype)[:20]!r}"
    if not (isinstance(shape, list) and all(_whole(v) for v in shape)):
        return "its shape is not a list of whole numbers"
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_whole(v) for v in offsets)):
        return "its data_offsets are not two byte positions (whole numbers, not negative)"
    info = TensorInfo(dtype, tuple(shape), (offsets[0], offsets[1]))
    if offsets[1] - offsets[0] != info.numel * _DTYPE_BYTES[dtype]:
        return "its data_offsets do not match its dtype and shape"
    return info


def _check_no_overlap(path: Path, tensors: dict[str, TensorInfo]) -> None:
    """Two tensors must not share bytes (a damaged or crafted header would make one tensor read another's)."""
    spans = sorted((info.offsets, key) for key, info in tensors.items() if info.offsets[1] > info.offsets[0])
    for ((_, end), first), ((begin, _), second) in itertools.pairwise(spans):
        if begin < end:
            raise ModelFileError(
                f"{path}: corrupt safetensors header (tensors {first!r} and {second!r} share bytes)"
            )


def _read_index(path: Path) -> SafetensorsHeader:
    """Merge the headers of the shards listed in a `*.safetensors.index.json` (diffusers / transformers)."""
    if not path.is_file():
        raise ModelFileError(f"{path}: file not found")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        weight_map = index["weight_map"]
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError("empty weight_map")
        names = sorted({str(v) for v in weight_map.values()})
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        raise ModelFileError(f"{path}: not a valid sharded-checkpoint index (no weight_map)") from None
    tensors: dict[str, TensorInfo] = {}
    shards: list[tuple[Path, int]] = []
    metadata: dict[str, str] = {}
    for i, name in enumerate(names):
        if Path(name).name != name:
            raise ModelFileError(f"{path}: shard name {name!r} points outside its folder")
        shard_path = path.parent / name
        if not shard_path.is_file():
            raise ModelFileError(f"{path}: shard {name} is missing; download the checkpoint again")
        shard = read_header(shard_path)
        shards.append((shard_path, shard.data_start))
        metadata.update(shard.metadata)
        for key, info in shard.tensors.items():
            tensors[key] = TensorInfo(info.dtype, info.shape, info.offsets, i)
    listed = {str(k) for k, v in weight_map.items()}
    absent = sorted(k for k in listed if k not in tensors)
    if absent:
        raise ModelFileError(
            f"{path}: {len(absent)} tensors listed in the index are in no shard (e.g. {absent[0]})"
        )
    return SafetensorsHeader(path, tensors, metadata, 0, tuple(shards))


def load_tensors(
    path: str | Path,
    prefix: str = "",
    *,
    keys: Iterable[str] | None = None,
    skip: Callable[[str], bool] | None = None,
    dtype: torch.dtype | None = None,
    convert: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
    header: SafetensorsHeader | None = None,
) -> dict[str, torch.Tensor]:
    """Load the tensors under `prefix` (with the prefix removed) as CPU tensors, floating-point ones cast to
    `dtype` as they are read, or passed through `convert(name, tensor)` instead when it is given.

    Tensors are read with plain file reads straight into their final buffers (no memory map, no second copy), so
    loading takes the bytes of the result plus at most one tensor in its stored dtype. `path` may be a sharded
    checkpoint's `*.safetensors.index.json`; `header` skips re-reading a header the caller already has. An integer
    tensor among those loaded is damage (our networks hold only floating-point weights): CheckpointMismatchError."""
    header = header or read_header(path)
    wanted = None if keys is None else set(keys)
    out: dict[str, torch.Tensor] = {}
    order = sorted(header.tensors.items(), key=lambda kv: (kv[1].shard, kv[1].offsets[0]))
    for shard_index, (file_path, data_start) in enumerate(
        header.shards or ((header.path, header.data_start),)
    ):
        try:
            with file_path.open("rb", buffering=0) as f:
                for key, info in order:
                    if info.shard != shard_index or not key.startswith(prefix):
                        continue
                    name = key[len(prefix) :]
                    if (wanted is not None and name not in wanted) or (skip is not None and skip(name)):
                        continue
                    if info.dtype in _INTEGER_DTYPES:  # no network of ours has integer weights
                        raise CheckpointMismatchError(
                            f"{file_path}: tensor {key} is stored as integers ({info.dtype}) where the network "
                            "needs floating-point weights; the file is damaged, download it again"
                        )
                    t = _read_tensor(f, data_start, info, file_path)
                    if convert is not None:
                        t = convert(name, t)
                    elif dtype is not None and t.is_floating_point() and t.dtype != dtype:
                        t = t.to(dtype)
                    out[name] = t
        except OSError as exc:
            raise ModelFileError(f"{file_path}: cannot read tensors ({exc})") from None
    return out


def _read_tensor(f, data_start: int, info: TensorInfo, path: Path) -> torch.Tensor:
    begin, end = info.offsets
    raw = torch.empty(end - begin, dtype=torch.uint8)
    f.seek(data_start + begin)
    view = memoryview(raw.numpy())
    done = 0
    while done < len(view):
        n = f.readinto(view[done:])
        if not n:
            raise ModelFileError(f"{path}: file is truncated; download it again")
        done += n
    return raw.view(_TORCH_DTYPES[info.dtype]).reshape(info.shape)


def check_keys(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str, what: str) -> None:
    """Raise CheckpointMismatchError naming the file and a few keys when names or shapes disagree."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        k = wrong[0]
        parts.append(
            f"{len(wrong)} of the wrong shape (e.g. {k}: file {tuple(state[k].shape)}, needs {expected[k]})"
        )
    raise CheckpointMismatchError(f"{source}: not a valid {what}: " + "; ".join(parts))


def assign_weights(
    module: torch.nn.Module,
    state: dict[str, torch.Tensor],
    *,
    source: str,
    what: str,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
) -> torch.nn.Module:
    """Assign `state` into a module built on `meta` (strict names and shapes), casting to `dtype` one tensor at a
    time so that at most one extra tensor is alive during the conversion."""
    check_keys(module, state, source, what)
    for key in list(state):
        t = state[key]
        if dtype is not None and t.is_floating_point() and t.dtype != dtype:
            t = t.to(dtype)
        state[key] = t.to(device)
    module.load_state_dict(state, strict=True, assign=True)
    # Buffers that are not in the file (non-persistent) would stay on meta: none of our modules have any.
    return module
