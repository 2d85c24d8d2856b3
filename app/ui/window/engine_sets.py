"""The picker's entries for model sets on ComfyUI servers, and what a chosen server cannot run (Qt-free helpers
of app.ui.window.engine_hookup)."""

from __future__ import annotations

import logging
from collections.abc import Set as AbstractSet
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from app.inference.api.errors import InvalidRequestError
from app.remote.capabilities import ServerInfo
from app.remote.engine_list import EngineList
from app.remote.job import model_stem, refuse_what_is_not_sent, variant_of
from app.ui.form.model_library import ModelSetInfo

log = logging.getLogger(__name__)


def remote_model_sets(engines: EngineList, infos: dict[str, ServerInfo]) -> list[ModelSetInfo]:
    """One picker entry per SD3.5 checkpoint the enabled servers list, with the servers that have it in priority
    order (several: the job's seeds are spread over them)."""
    by_checkpoint: dict[str, list[str]] = {}
    for entry in engines.enabled():
        info = infos.get(entry.url)
        for checkpoint in info.sd35_checkpoints if info else ():
            by_checkpoint.setdefault(checkpoint, []).append(entry.url)
    sets = []
    for checkpoint, urls in by_checkpoint.items():
        names = [engines.label_for(u) for u in urls]
        server = names[0] + (f" +{len(names) - 1}" if len(names) > 1 else "")
        partial = all(e is not None and e.partial_text_encoders for e in map(engines.find, urls))
        missing = []
        if any(infos[u].encoder("clip_l") is None for u in urls):
            missing.append("CLIP-L")
        if any(infos[u].encoder("clip_g") is None for u in urls) and not partial:
            missing.append("CLIP-G")
        has_t5 = all(infos[u].encoder("t5") is not None for u in urls)
        sets.append(ModelSetInfo(Path(checkpoint), variant_of(checkpoint, None), model_stem(checkpoint),
                                 has_t5=has_t5, missing=tuple(missing), engine=tuple(urls), server=server))  # fmt: skip
    return sets


def unavailable_options(info: ModelSetInfo, infos: dict[str, ServerInfo], label) -> dict[str, str]:
    """Form switches the servers of `info` cannot run: field -> one sentence (the disabled control's tooltip)."""
    out: dict[str, str] = {}
    for url in info.engine:
        server = infos.get(url)
        if server is None:
            continue
        name = label(url)
        if "SkipLayerGuidanceSD3" not in server.nodes:
            out.setdefault(
                "slg_enabled", f"{name} has no SkipLayerGuidanceSD3 node: skip-layer guidance is off."
            )
        window = ("ConditioningZeroOut", "ConditioningSetTimestepRange", "ConditioningCombine")
        if any(n not in server.nodes for n in window):
            out.setdefault("negative_window", f"{name} lacks the nodes of the negative-prompt window.")
        if server.encoder("t5") is None:
            out.setdefault(
                "use_t5", f"{name} has no T5-XXL text encoder (t5xxl*.safetensors in models/clip)."
            )
    return out


# A value of each request part app.remote.job.refuse_what_is_not_sent may refuse, to ask it about that part alone.
_PROBES: dict[str, object] = {"loras": (object(),), "controlnets": (object(),), "mask_image": object(),
                              "outpaint": (1, 0, 0, 0), "hires_scale": 2.0}  # fmt: skip


def not_sent(part: str) -> str:
    """Why a remote engine cannot take `part` of a request yet; "" once app.remote sends it (asked, not assumed:
    another change may teach app.remote to send LoRAs, ControlNets or masks)."""
    probe = SimpleNamespace(
        mask_image=None, outpaint=(0, 0, 0, 0), hires_scale=None, loras=(), controlnets=()
    )
    setattr(probe, part, _PROBES[part])
    try:
        refuse_what_is_not_sent(probe)  # type: ignore[arg-type]
    except InvalidRequestError as exc:
        return str(exc)[:1].upper() + str(exc)[1:] + "."
    except Exception:  # a newer check that looks deeper: the job's own check will say it
        return ""
    return ""


def remembered_offline(
    remembered: tuple[str, str],
    engines: EngineList,
    infos: dict[str, ServerInfo],
    sets: list[ModelSetInfo],
    unreachable: AbstractSet[str] = frozenset(),
) -> tuple[bool, list[ModelSetInfo]]:
    """The remembered server set (engine URLs joined by ",", checkpoint) while its servers have not answered:
    (still waiting for them, [an entry marked offline — connecting until a check of one of them failed] unless
    `sets` lists it). The entry keeps the user's choice through an offline start, and the window's saved state
    with it; the real entry has the same key."""
    engine, checkpoint = remembered
    urls = tuple(u for u in engine.split(",") if u)
    entries = [engines.find(u) for u in urls]
    if not urls or any(e is None or not e.enabled for e in entries) or all(u in infos for u in urls):
        return False, []
    info = ModelSetInfo(Path(checkpoint), variant_of(checkpoint, None), model_stem(checkpoint), has_t5=True,
                        engine=urls)  # fmt: skip
    if any(s.key == info.key for s in sets):
        return True, []
    names = [engines.label_for(u) for u in urls]
    server = names[0] + (f" +{len(names) - 1}" if len(names) > 1 else "")
    answer = "they answer" if len(urls) > 1 else "it answers"
    if unreachable & set(urls):
        state, why = (
            "offline",
            f"{server} is offline: SD3.5 Studio keeps checking, and this model set can be used",
        )
    else:  # the first check is still on its way
        state, why = "connecting…", f"{server} has not answered yet: this model set can be used"
    why += f" once {answer}."
    return True, [replace(info, server=f"{server} · {state}", offline=why)]
