"""An SD3.5 ComfyUI graph equivalent to one of our images, in both of ComfyUI's formats.

ComfyUI's SaveImage stores two PNG text chunks: `prompt`, the API format ({node id: {"class_type", "inputs"}},
where an input is a widget value or a link `[source node id, output slot]`), and `workflow`, the UI format
(nodes with typed input/output slots, `widgets_values` in widget order, and a `links` table of
`[link id, from node, from slot, to node, to slot, type]`). Dropping the PNG on ComfyUI loads `workflow`.

The graph (input names as in ComfyUI's `nodes.py`, `comfy_extras/nodes_sd3.py`, `nodes_model_advanced.py`):
  CheckpointLoaderSimple (MMDiT + VAE) ─ [LoraLoader ×n] ─ ModelSamplingSD3(shift) ─ [SkipLayerGuidanceSD3] ─
  KSampler.model (each LoraLoader also takes and gives the CLIP; LoraLoaderModelOnly at text strength 0)
  TripleCLIPLoader (CLIP-L, CLIP-G, T5) or DualCLIPLoader(type sd3) without T5 ─ CLIPTextEncode ×2
  (a remote server without CLIP-G, when allowed: CLIPLoader(CLIP-L, sd3) or DualCLIPLoader(CLIP-L, T5, sd3))
  negative window (SD35_SAMPLING.md §6.1): text ─ ConditioningSetTimestepRange(0, f) ┐
                                  text ─ ConditioningZeroOut ─ ConditioningSetTimestepRange(f, 1) ┴ Combine
  EmptySD3LatentImage (or LoadImage ─ VAEEncode for img2img) ─ KSampler ─ VAEDecode ─ SaveImage
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from app.metadata import comfy_refine, comfy_sampler, comfy_uploaded
from app.metadata.controlnet_meta import add_comfy_controlnets
from app.metadata.params import ImageParams

log = logging.getLogger(__name__)

LinkRef = tuple[str, int]  # (source node id, output slot)


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """The slots of one ComfyUI node type: inputs in ComfyUI's declaration order (links have an upper-case
    type, widgets INT/FLOAT/STRING/COMBO), outputs, and the extra widgets the UI adds (KSampler's
    "control_after_generate" after the seed, LoadImage's "upload")."""

    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[tuple[str, str], ...]
    ui_widgets: tuple[tuple[str, str], ...] = ()  # (name to insert, after which widget)


WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "COMBO", "BOOLEAN"})

NODE_SPECS: dict[str, NodeSpec] = {
    "CheckpointLoaderSimple": NodeSpec(
        (("ckpt_name", "COMBO"),), (("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE"))
    ),
    "TripleCLIPLoader": NodeSpec(
        (("clip_name1", "COMBO"), ("clip_name2", "COMBO"), ("clip_name3", "COMBO")), (("CLIP", "CLIP"),)
    ),
    "CLIPLoader": NodeSpec((("clip_name", "COMBO"), ("type", "COMBO")), (("CLIP", "CLIP"),)),
    "DualCLIPLoader": NodeSpec(
        (("clip_name1", "COMBO"), ("clip_name2", "COMBO"), ("type", "COMBO")), (("CLIP", "CLIP"),)
    ),
    "LoraLoader": NodeSpec(
        (
            ("model", "MODEL"),
            ("clip", "CLIP"),
            ("lora_name", "COMBO"),
            ("strength_model", "FLOAT"),
            ("strength_clip", "FLOAT"),
        ),
        (("MODEL", "MODEL"), ("CLIP", "CLIP")),
    ),
    "LoraLoaderModelOnly": NodeSpec(
        (("model", "MODEL"), ("lora_name", "COMBO"), ("strength_model", "FLOAT")), (("MODEL", "MODEL"),)
    ),
    "ModelSamplingSD3": NodeSpec((("model", "MODEL"), ("shift", "FLOAT")), (("MODEL", "MODEL"),)),
    "SkipLayerGuidanceSD3": NodeSpec(
        (
            ("model", "MODEL"),
            ("layers", "STRING"),
            ("scale", "FLOAT"),
            ("start_percent", "FLOAT"),
            ("end_percent", "FLOAT"),
        ),
        (("MODEL", "MODEL"),),
    ),
    "CLIPTextEncode": NodeSpec((("text", "STRING"), ("clip", "CLIP")), (("CONDITIONING", "CONDITIONING"),)),
    "ConditioningZeroOut": NodeSpec((("conditioning", "CONDITIONING"),), (("CONDITIONING", "CONDITIONING"),)),
    "ConditioningSetTimestepRange": NodeSpec(
        (("conditioning", "CONDITIONING"), ("start", "FLOAT"), ("end", "FLOAT")),
        (("CONDITIONING", "CONDITIONING"),),
    ),
    "ConditioningCombine": NodeSpec(
        (("conditioning_1", "CONDITIONING"), ("conditioning_2", "CONDITIONING")),
        (("CONDITIONING", "CONDITIONING"),),
    ),
    "EmptySD3LatentImage": NodeSpec(
        (("width", "INT"), ("height", "INT"), ("batch_size", "INT")), (("LATENT", "LATENT"),)
    ),
    "LoadImage": NodeSpec(
        (("image", "COMBO"),), (("IMAGE", "IMAGE"), ("MASK", "MASK")), (("upload", "image"),)
    ),
    "VAEEncode": NodeSpec((("pixels", "IMAGE"), ("vae", "VAE")), (("LATENT", "LATENT"),)),
    "KSampler": NodeSpec(
        (
            ("model", "MODEL"),
            ("seed", "INT"),
            ("steps", "INT"),
            ("cfg", "FLOAT"),
            ("sampler_name", "COMBO"),
            ("scheduler", "COMBO"),
            ("positive", "CONDITIONING"),
            ("negative", "CONDITIONING"),
            ("latent_image", "LATENT"),
            ("denoise", "FLOAT"),
        ),
        (("LATENT", "LATENT"),),
        (("control_after_generate", "seed"),),
    ),
    "VAEDecode": NodeSpec((("samples", "LATENT"), ("vae", "VAE")), (("IMAGE", "IMAGE"),)),
    "SaveImage": NodeSpec((("images", "IMAGE"), ("filename_prefix", "STRING")), ()),
    # refine (comfy_refine.py)
    "LoadImageMask": NodeSpec(
        (("image", "COMBO"), ("channel", "COMBO")), (("MASK", "MASK"),), (("upload", "channel"),)
    ),
    "ImagePadForOutpaint": NodeSpec(
        (
            ("image", "IMAGE"),
            ("left", "INT"),
            ("top", "INT"),
            ("right", "INT"),
            ("bottom", "INT"),
            ("feathering", "INT"),
        ),
        (("IMAGE", "IMAGE"), ("MASK", "MASK")),
    ),
    "MaskComposite": NodeSpec(
        (("destination", "MASK"), ("source", "MASK"), ("x", "INT"), ("y", "INT"), ("operation", "COMBO")),
        (("MASK", "MASK"),),
    ),
    "GrowMask": NodeSpec(
        (("mask", "MASK"), ("expand", "INT"), ("tapered_corners", "BOOLEAN")), (("MASK", "MASK"),)
    ),
    "SetLatentNoiseMask": NodeSpec((("samples", "LATENT"), ("mask", "MASK")), (("LATENT", "LATENT"),)),
    "DifferentialDiffusion": NodeSpec((("model", "MODEL"), ("strength", "FLOAT")), (("MODEL", "MODEL"),)),
    "ImageCompositeMasked": NodeSpec(
        (
            ("destination", "IMAGE"),
            ("source", "IMAGE"),
            ("x", "INT"),
            ("y", "INT"),
            ("resize_source", "BOOLEAN"),
            ("mask", "MASK"),
        ),
        (("IMAGE", "IMAGE"),),
    ),
    "ImageScale": NodeSpec(
        (
            ("image", "IMAGE"),
            ("upscale_method", "COMBO"),
            ("width", "INT"),
            ("height", "INT"),
            ("crop", "COMBO"),
        ),
        (("IMAGE", "IMAGE"),),
    ),
    "ImageCrop": NodeSpec(
        (("image", "IMAGE"), ("width", "INT"), ("height", "INT"), ("x", "INT"), ("y", "INT")),
        (("IMAGE", "IMAGE"),),
    ),
    "BasicScheduler": NodeSpec(
        (("model", "MODEL"), ("scheduler", "COMBO"), ("steps", "INT"), ("denoise", "FLOAT")),
        (("SIGMAS", "SIGMAS"),),
    ),
    "SplitSigmas": NodeSpec(
        (("sigmas", "SIGMAS"), ("step", "INT")), (("high_sigmas", "SIGMAS"), ("low_sigmas", "SIGMAS"))
    ),
    "KSamplerSelect": NodeSpec((("sampler_name", "COMBO"),), (("SAMPLER", "SAMPLER"),)),
    "SamplerCustom": NodeSpec(
        (
            ("model", "MODEL"),
            ("add_noise", "BOOLEAN"),
            ("noise_seed", "INT"),
            ("cfg", "FLOAT"),
            ("positive", "CONDITIONING"),
            ("negative", "CONDITIONING"),
            ("sampler", "SAMPLER"),
            ("sigmas", "SIGMAS"),
            ("latent_image", "LATENT"),
        ),
        (("output", "LATENT"), ("denoised_output", "LATENT")),
        (("control_after_generate", "noise_seed"),),
    ),
    "ControlNetLoader": NodeSpec((("control_net_name", "COMBO"),), (("CONTROL_NET", "CONTROL_NET"),)),
    "ControlNetApplyAdvanced": NodeSpec(
        (
            ("positive", "CONDITIONING"),
            ("negative", "CONDITIONING"),
            ("control_net", "CONTROL_NET"),
            ("image", "IMAGE"),
            ("strength", "FLOAT"),
            ("start_percent", "FLOAT"),
            ("end_percent", "FLOAT"),
            ("vae", "VAE"),
        ),
        (("positive", "CONDITIONING"), ("negative", "CONDITIONING")),
    ),
    "Canny": NodeSpec(
        (("image", "IMAGE"), ("low_threshold", "FLOAT"), ("high_threshold", "FLOAT")), (("IMAGE", "IMAGE"),)
    ),
    "ImageBlur": NodeSpec(
        (("image", "IMAGE"), ("blur_radius", "INT"), ("sigma", "FLOAT")), (("IMAGE", "IMAGE"),)
    ),
    "ImageInvert": NodeSpec((("image", "IMAGE"),), (("IMAGE", "IMAGE"),)),
}

_UI_WIDGET_VALUES = {"control_after_generate": "fixed", "upload": "image"}
_TITLES = {"positive": "Positive Prompt", "negative": "Negative Prompt"}


@dataclass(frozen=True, slots=True)
class ComfyFiles:
    """File names as ComfyUI's loaders list them (relative to models/checkpoints and models/clip).

    `clip_g` None: a server without CLIP-G, which a remote job may be told to accept; the graph then loads CLIP-L
    (and T5) alone with type sd3, so the `prompt` chunk says what really ran."""

    checkpoint: str
    clip_l: str = "clip_l.safetensors"
    clip_g: str | None = "clip_g.safetensors"
    t5: str = "t5xxl_fp16.safetensors"
    init_image: str | None = None  # the name a server gave the uploaded init image (default: the file's name)
    # A remote job's uploads and the server's own file names (app/remote/inputs.py, comfy_uploaded.py):
    mask_image: str | None = None  # the grown mask on the canvas; init_image is then the canvas itself
    composite_mask: str | None = None  # the feathered mask of the final composite
    output_size: tuple[int, int] | None = None  # (W, H) cropped from an aligned canvas
    loras: tuple[str, ...] = ()  # the server's LoRA names, in the request's order
    controlnets: tuple[str, ...] = ()  # the server's ControlNet names, in the request's order
    control_images: tuple[str, ...] = ()  # the uploaded control images, in the request's order
    our_schedule: bool = False  # a partial denoise samples our img2img schedule (comfy_sampler.py)


class _Graph:
    def __init__(self) -> None:
        self.nodes: dict[str, dict] = {}
        self.titles: dict[str, str] = {}
        self.notes: list[str] = []  # text of UI-only Note nodes (the workflow), never in the API prompt

    def add(self, class_type: str, title: str | None = None, **inputs: object) -> str:
        spec = NODE_SPECS[class_type]
        names = [n for n, _ in spec.inputs]
        unknown = set(inputs) - set(names)
        if unknown:
            raise ValueError(f"{class_type} has no input {sorted(unknown)}")
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {
            "inputs": {n: inputs[n] for n in names if n in inputs},
            "class_type": class_type,
        }
        if title:
            self.titles[node_id] = title
        return node_id


def _link(node_id: str, slot: int = 0) -> list[object]:
    return [node_id, slot]


def build_prompt(params: ImageParams, files: ComfyFiles, filename_prefix: str = "SD3.5 Studio") -> _Graph:
    """The API-format graph of one image (batch of one, seed = the image's own seed)."""
    g = _Graph()
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name=files.checkpoint)
    if files.clip_g is None:  # partial text encoders (remote servers only): what the server has, said so
        if params.use_t5:
            clip = g.add("DualCLIPLoader", clip_name1=files.clip_l, clip_name2=files.t5, type="sd3")
        else:
            clip = g.add("CLIPLoader", clip_name=files.clip_l, type="sd3")
    elif params.use_t5:
        clip = g.add(
            "TripleCLIPLoader", clip_name1=files.clip_l, clip_name2=files.clip_g, clip_name3=files.t5
        )
    else:
        clip = g.add("DualCLIPLoader", clip_name1=files.clip_l, clip_name2=files.clip_g, type="sd3")
    model_out, clip_out = _link(ckpt, 0), _link(clip)
    for i, lora in enumerate(
        params.loras
    ):  # chained between the loaders and the rest, as ComfyUI users wire them
        name = files.loras[i] if i < len(files.loras) else lora.path.name
        if lora.text_strength == 0:
            model_out = _link(g.add("LoraLoaderModelOnly", model=model_out, lora_name=name,
                                    strength_model=lora.strength))  # fmt: skip
            continue
        node = g.add("LoraLoader", model=model_out, clip=clip_out, lora_name=name,
                     strength_model=lora.strength, strength_clip=lora.text_strength)  # fmt: skip
        model_out, clip_out = _link(node, 0), _link(node, 1)
    model = g.add("ModelSamplingSD3", model=model_out, shift=params.shift)
    if params.slg_scale and params.slg_layers:
        model = g.add(
            "SkipLayerGuidanceSD3",
            model=_link(model),
            layers=", ".join(map(str, params.slg_layers)),
            scale=params.slg_scale,
            start_percent=params.slg_start,
            end_percent=params.slg_end,
        )
    positive = g.add("CLIPTextEncode", _TITLES["positive"], text=params.prompt, clip=clip_out)
    negative = g.add("CLIPTextEncode", _TITLES["negative"], text=params.negative, clip=clip_out)
    if params.negative_until is not None:
        f = params.negative_until
        early = g.add("ConditioningSetTimestepRange", conditioning=_link(negative), start=0.0, end=f)
        zero = g.add("ConditioningZeroOut", conditioning=_link(negative))
        late = g.add("ConditioningSetTimestepRange", conditioning=_link(zero), start=f, end=1.0)
        negative = g.add("ConditioningCombine", conditioning_1=_link(early), conditioning_2=_link(late))
    positive_in, negative_in = add_comfy_controlnets(
        g, _link, params, _link(ckpt, 2), _link(positive), _link(negative), files
    )
    start = None
    if files.mask_image is not None:  # a remote job's uploaded canvas and mask
        start = comfy_uploaded.uploaded_start(g, files, _link(ckpt, 2))
        latent = start.latent[0]
        model = comfy_refine.soft_mask_model(g, params, _link(model))[0]
    elif params.init_image is not None and (params.mask_image is not None or any(params.outpaint or ())):
        start = comfy_refine.masked_start(g, params, _link(ckpt, 2))
        latent = start.latent[0]
        model = comfy_refine.soft_mask_model(g, params, _link(model))[0]
    elif params.init_image is not None:
        name = files.init_image or comfy_refine.file_name(params.init_image)
        pixels = g.add("LoadImage", image=name)
        latent = g.add("VAEEncode", pixels=_link(pixels), vae=_link(ckpt, 2))
    else:
        latent = g.add("EmptySD3LatentImage", width=params.width, height=params.height, batch_size=1)
    sampled = comfy_sampler.add_sampler(
        g,
        files,
        model=_link(model),
        seed=params.seed,
        steps=params.steps,
        cfg=params.cfg,
        sampler=params.sampler,
        scheduler=params.scheduler,
        positive=positive_in,
        negative=negative_in,
        latent=_link(latent),
        denoise=params.denoise,
    )
    image = _link(g.add("VAEDecode", samples=_link(sampled), vae=_link(ckpt, 2)))
    if start is not None:
        image = comfy_uploaded.cropped(g, files, comfy_refine.composite(g, start, image))
    if params.hires_scale not in (None, 1.0):
        image = comfy_refine.hires_pass(g, comfy_uploaded.hires_params(params, files), image, _link(model),
                                        _link(positive), _link(negative), _link(ckpt, 2), files)  # fmt: skip
    g.add("SaveImage", images=image, filename_prefix=filename_prefix)
    return g


def _depths(nodes: dict[str, dict]) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(node_id: str) -> int:
        if node_id not in depth:
            sources = [v[0] for v in nodes[node_id]["inputs"].values() if isinstance(v, list)]
            depth[node_id] = 1 + max((visit(s) for s in sources), default=-1)
        return depth[node_id]

    for node_id in nodes:
        visit(node_id)
    return depth


def to_workflow(g: _Graph) -> dict:
    """The UI-format graph of an API-format one: typed slots, widgets in order, a links table, a layout."""
    depth = _depths(g.nodes)
    rows: dict[int, int] = {}
    links: list[list[object]] = []
    outputs: dict[str, list[dict]] = {}
    ui_nodes: list[dict] = []
    for order, (node_id, node) in enumerate(
        sorted(g.nodes.items(), key=lambda kv: (depth[kv[0]], int(kv[0])))
    ):
        spec = NODE_SPECS[node["class_type"]]
        outputs[node_id] = [
            {"name": n, "type": t, "links": [], "slot_index": i} for i, (n, t) in enumerate(spec.outputs)
        ]
        row = rows.get(depth[node_id], 0)
        rows[depth[node_id]] = row + 1
        ui_nodes.append(
            {
                "id": int(node_id),
                "type": node["class_type"],
                "pos": [depth[node_id] * 380, row * 260],
                "size": [340, 220],
                "flags": {},
                "order": order,
                "mode": 0,
                "inputs": [],
                "outputs": outputs[node_id],
                "properties": {"Node name for S&R": node["class_type"]},
                "widgets_values": [],
            }
        )
        if node_id in g.titles:
            ui_nodes[-1]["title"] = g.titles[node_id]
    by_id = {str(n["id"]): n for n in ui_nodes}
    for node_id, node in sorted(g.nodes.items(), key=lambda kv: int(kv[0])):
        spec, ui = NODE_SPECS[node["class_type"]], by_id[node_id]
        for name, kind in spec.inputs:
            value = node["inputs"].get(name)
            if kind in WIDGET_TYPES:
                ui["widgets_values"].append(value)
                extra = [w for w, after in spec.ui_widgets if after == name]
                ui["widgets_values"].extend(_UI_WIDGET_VALUES[w] for w in extra)
                continue
            link_id = len(links) + 1
            source, slot = value
            links.append([link_id, int(source), slot, int(node_id), len(ui["inputs"]), kind])
            ui["inputs"].append({"name": name, "type": kind, "link": link_id})
            outputs[source][slot]["links"].append(link_id)
    for text in g.notes:  # frontend-only comments, placed below the graph
        node_id = max(int(n["id"]) for n in ui_nodes) + 1
        ui_nodes.append(
            {"id": node_id, "type": "Note", "pos": [0, (max(rows.values(), default=0) + 1) * 260], "size": [480, 160],
             "flags": {}, "order": len(ui_nodes), "mode": 0, "inputs": [], "outputs": [], "properties": {"text": ""},
             "widgets_values": [text]}
        )  # fmt: skip
    return {
        "last_node_id": max(int(n["id"]) for n in ui_nodes),
        "last_link_id": len(links),
        "nodes": ui_nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


def comfy_chunks(params: ImageParams, files: ComfyFiles) -> tuple[str, str]:
    """(prompt, workflow) as ComfyUI's SaveImage writes them: `json.dumps` with its default separators."""
    g = build_prompt(params, files)
    return json.dumps(g.nodes), json.dumps(to_workflow(g))
