"""Which LoRAs an image used, as the gallery indexes them: by name (the file name without `.safetensors`).

The gallery's LoRA filter matches these names; they are stored per image in the `image_loras` table (schema 5)
when the image is added or imported, so filtering never parses the parameters JSON of every row.
"""

from __future__ import annotations

from app.metadata.params import ImageParams


def lora_names(params: ImageParams) -> list[str]:
    """The distinct names of the LoRAs in `params`, in the order they were applied."""
    names: list[str] = []
    for lora in params.request.loras or ():
        if lora.name and lora.name not in names:
            names.append(lora.name)
    return names
