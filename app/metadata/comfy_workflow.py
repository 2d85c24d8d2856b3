"""ComfyUI's UI-format `workflow` turned into the API-format `prompt` that recall reads.

Many ComfyUI PNGs (and files saved from ComfyUI's menu) carry only `workflow`: a list of nodes, each with a
`type`, a `mode` (0 on, 2 muted, 4 bypassed), `inputs` (`{"name", "type", "link"}`; a widget turned into an
input also has `"widget"`), and `widgets_values`, the widget values in the order the node declares them, plus
the values the UI adds of its own (the seed's "control_after_generate"). Links are
`[id, from node, from slot, to node, to slot, type]` (or objects with the same fields in the 1.0 schema).

What ComfyUI's front end does before queueing, done here as well: frontend-only Reroute and PrimitiveNode nodes
are resolved to what feeds them, muted nodes are left out, and a bypassed node passes on its input of the same
type. Node types we do not know keep their links (recall may walk through them) and are reported in the notes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from app.metadata.limits import MetadataError, check_depth, load_json

log = logging.getLogger(__name__)

SEED_CONTROL = "control_after_generate"  # the UI's widget after every seed; not an input of the node
_SEED_CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})

# Widget names in ComfyUI's declaration order (nodes.py, comfy_extras/nodes_sd3.py, nodes_model_advanced.py,
# nodes_cond.py, nodes_slg.py). Extra trailing values (widgets added by newer versions) are ignored.
WIDGETS: dict[str, tuple[str, ...]] = {
    "CheckpointLoaderSimple": ("ckpt_name",),
    "UNETLoader": ("unet_name", "weight_dtype"),
    "TripleCLIPLoader": ("clip_name1", "clip_name2", "clip_name3"),
    "DualCLIPLoader": ("clip_name1", "clip_name2", "type", "device"),
    "CLIPLoader": ("clip_name", "type", "device"),
    "VAELoader": ("vae_name",),
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeSD3": ("clip_l", "clip_g", "t5xxl", "empty_padding"),
    "EmptySD3LatentImage": ("width", "height", "batch_size"),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "ModelSamplingSD3": ("shift",),
    "KSampler": ("seed", SEED_CONTROL, "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "KSamplerAdvanced": (
        "add_noise",
        "noise_seed",
        SEED_CONTROL,
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "start_at_step",
        "end_at_step",
        "return_with_leftover_noise",
    ),
    "ConditioningZeroOut": (),
    "ConditioningSetTimestepRange": ("start", "end"),
    "ConditioningCombine": (),
    "SkipLayerGuidanceSD3": ("layers", "scale", "start_percent", "end_percent"),
    "LoadImage": ("image", "upload"),
    "LoadImageMask": ("image", "channel", "upload"),
    "ImagePadForOutpaint": ("left", "top", "right", "bottom", "feathering"),
    "MaskComposite": ("x", "y", "operation"),
    "GrowMask": ("expand", "tapered_corners"),
    "SetLatentNoiseMask": (),
    "DifferentialDiffusion": ("strength",),
    "ImageCompositeMasked": ("x", "y", "resize_source"),
    "ImageScale": ("upscale_method", "width", "height", "crop"),
    "VAEEncode": (),
    "VAEDecode": (),
    "SaveImage": ("filename_prefix",),
    "PreviewImage": (),
    "ControlNetLoader": ("control_net_name",),
    "ControlNetApplyAdvanced": ("strength", "start_percent", "end_percent"),
    "ControlNetApplySD3": ("strength", "start_percent", "end_percent"),
    "Canny": ("low_threshold", "high_threshold"),
    "ImageBlur": ("blur_radius", "sigma"),
    "ImageInvert": (),
}
_UI_ONLY_WIDGETS = frozenset({SEED_CONTROL, "upload"})
# Nodes that only hold a value: the front-end PrimitiveNode, whose value ComfyUI copies into the inputs it
# feeds, and the newer backend primitives, which output their value unchanged; both become that value.
_VALUE_NODES = {
    "PrimitiveNode",
    "PrimitiveInt",
    "PrimitiveFloat",
    "PrimitiveString",
    "PrimitiveStringMultiline",
    "PrimitiveBoolean",
}
_SILENT = {"Note", "MarkdownNote"}  # comments on the canvas, never part of a prompt
MUTED, BYPASSED = 2, 4


class WorkflowError(MetadataError):
    """The workflow chunk is not a ComfyUI workflow we can read; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class _Link:
    source: int
    slot: int


@dataclass(frozen=True, slots=True)
class ConvertedWorkflow:
    prompt: dict[str, dict]  # API format: {node id: {"class_type", "inputs"}}
    notes: tuple[str, ...]  # what could not be carried over, as short sentences


def _parse(workflow: str | Mapping) -> Mapping:
    try:
        if isinstance(workflow, str | bytes):
            workflow = load_json(workflow, "The ComfyUI workflow")
        else:
            check_depth(workflow, "The ComfyUI workflow")
    except MetadataError as exc:
        raise WorkflowError(str(exc)) from None
    if not isinstance(workflow, Mapping) or not isinstance(workflow.get("nodes"), list):
        raise WorkflowError("The ComfyUI workflow has no list of nodes.")
    return workflow


def _links(workflow: Mapping) -> dict[int, _Link]:
    links: dict[int, _Link] = {}
    for entry in workflow.get("links") or []:
        if isinstance(entry, list) and len(entry) >= 5:
            link_id, source, slot = entry[0], entry[1], entry[2]
        elif isinstance(entry, Mapping):  # the 1.0 schema
            link_id, source, slot = entry.get("id"), entry.get("origin_id"), entry.get("origin_slot")
        else:
            raise WorkflowError(f"The ComfyUI workflow has a link that is not understood: {entry!r:.60}")
        if not all(isinstance(v, int) for v in (link_id, source, slot)):
            raise WorkflowError(f"The ComfyUI workflow has a link that is not understood: {entry!r:.60}")
        links[link_id] = _Link(source, slot)
    return links


class _Converter:
    def __init__(self, workflow: Mapping) -> None:
        self.nodes: dict[int, Mapping] = {}
        for node in workflow["nodes"]:
            if not isinstance(node, Mapping) or not isinstance(node.get("id"), int) or "type" not in node:
                raise WorkflowError("The ComfyUI workflow has a node without an id or a type.")
            self.nodes[node["id"]] = node
        self.links = _links(workflow)
        self.notes: list[str] = []
        self._noted: set[str] = set()
        self._resolved: dict[object, object] = {}  # link id → what it delivers (see resolve)

    def note(self, text: str) -> None:
        if text not in self._noted:  # a set: a workflow of thousands of unknown nodes notes each once, fast
            self._noted.add(text)
            self.notes.append(text)

    def _label(self, node: Mapping) -> str:
        return f"node {node['id']} ({node['type']})"

    def resolve(self, link_id: object) -> list | object | None:
        """What an input linked by `link_id` receives: `[node id, slot]` of a real node, a primitive's value,
        or None (nothing, or only muted nodes, upstream). Follows Reroute and bypassed nodes in a loop, not by
        recursion (a workflow may chain thousands), and remembers every link on the way: each is walked once."""
        path: list[object] = []
        seen: set[int] = set()
        result: object = None
        while True:
            if link_id in self._resolved:
                result = self._resolved[link_id]
                break
            link = self.links.get(link_id) if isinstance(link_id, int) else None
            if link is None or link.source in seen or link.source not in self.nodes:
                break
            path.append(link_id)
            node = self.nodes[link.source]
            seen.add(link.source)
            kind, mode = node["type"], node.get("mode", 0)
            if kind == "Reroute":
                inputs = self._input_links(node)
                link_id = inputs[0][1] if inputs else None
            elif mode == MUTED:
                self.note(f"{self._label(node)} is muted; what it fed is missing")
                break
            elif mode == BYPASSED:
                link_id = self._bypassed_input(node, link.slot)
            elif kind in _VALUE_NODES:
                values = node.get("widgets_values")
                result = values[0] if isinstance(values, list) and values else None
                break
            else:
                result = [str(link.source), link.slot]
                break
        for visited in path:
            self._resolved[visited] = result
        return result

    def _input_links(self, node: Mapping) -> list[tuple[Mapping, object]]:
        return [(i, i.get("link")) for i in node.get("inputs") or [] if isinstance(i, Mapping)]

    def _bypassed_input(self, node: Mapping, slot: int) -> object:
        """The link a bypassed node hands on: its first input of the output's type, as ComfyUI's front end
        does; None (noted) when it has none."""
        outputs = node.get("outputs") or []
        kind = (
            outputs[slot].get("type") if slot < len(outputs) and isinstance(outputs[slot], Mapping) else None
        )
        for entry, link_id in self._input_links(node):
            if link_id is not None and entry.get("type") == kind:
                return link_id
        self.note(f"{self._label(node)} is bypassed and has no input to pass on")
        return None

    def convert(self) -> dict[str, dict]:
        prompt: dict[str, dict] = {}
        for node_id, node in sorted(self.nodes.items()):
            kind = node["type"]
            if kind in _VALUE_NODES or kind == "Reroute" or kind in _SILENT:
                continue
            if node.get("mode", 0) in (MUTED, BYPASSED):
                continue
            inputs = self._widgets(node)
            for entry, link_id in self._input_links(node):
                name = entry.get("name")
                if not isinstance(name, str):
                    continue
                if link_id is None:
                    continue  # an unconnected input, or a widget shown as a socket but not linked
                value = self.resolve(link_id)
                if value is None:
                    inputs.pop(name, None)
                else:
                    inputs[name] = value
            prompt[str(node_id)] = {"class_type": kind, "inputs": inputs}
        return prompt

    def _widgets(self, node: Mapping) -> dict[str, object]:
        kind, values = node["type"], node.get("widgets_values")
        if isinstance(values, Mapping):  # some nodes save their widgets by name
            return dict(values)
        values = list(values or [])
        names = WIDGETS.get(kind)
        if names is None:
            if values or node.get("inputs"):
                self.note(f"{self._label(node)} is not known here; its settings are left out")
            return {}
        out: dict[str, object] = {}
        position = 0
        for name in names:
            if position >= len(values):
                break
            if name == SEED_CONTROL:
                # After a seed the UI saves its control value; workflows from before it existed have none.
                if isinstance(values[position], str) and values[position] in _SEED_CONTROL_VALUES:
                    position += 1
                continue
            if name not in _UI_ONLY_WIDGETS:
                out[name] = values[position]
            position += 1
        return out


def prompt_from_workflow(workflow: str | Mapping) -> ConvertedWorkflow:
    """The API-format graph of a UI-format workflow. Raises WorkflowError when it is not a readable workflow."""
    converter = _Converter(_parse(workflow))
    prompt = converter.convert()
    return ConvertedWorkflow(prompt, tuple(converter.notes))
