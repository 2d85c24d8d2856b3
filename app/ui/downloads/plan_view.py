"""What the download dialog shows, as plain values: the plan's file rows and totals, the licence and token lines, the
progress bar's position and the final messages. No widgets here, so tests read it without a screen."""

from __future__ import annotations

from dataclasses import dataclass

from app.downloads.catalog import CONTROLNET_REPO, HUB_WEBSITE, VariantSource, controlnet_file
from app.downloads.plan import DownloadPlan, PlannedFile
from app.downloads.progress import DownloadProgress, format_bytes

T5_LABELS = {
    "fp16": "fp16 — reference quality (9.8 GB)",
    "fp8": "fp8 — half the download and memory (4.9 GB)",
}
ROLE_ORDER = {"model": 0, "text encoder": 1, "preview decoder": 2, "controlnet": 3, "tokenizer": 4}
CONTROLNET_HINTS = {
    "blur": "keeps the layout of a low-detail image (tile / upscale)",
    "canny": "follows the edges of an image",
    "depth": "follows a depth map",
}
PROGRESS_STEPS = 1000  # the progress bar's range: fine enough for a 10 GB download to move visibly
STORED_TOKEN_HINT = "A token is stored on this computer. Paste another one only to replace it."
NO_TOKEN_HINT = "Paste a Hugging Face access token (read access is enough)."
RESUME_TEXT = "Download cancelled. What has arrived is kept: the next Download resumes from there."
ALREADY_HERE = "✓ already here"
CONTROLNETS_ONLY_TEXT = "Only the ControlNets (SD3.5 Large is already on this computer)"
CONTROLNETS_ONLY_TIP = (
    "For a Large set kept elsewhere (the Hugging Face cache, ComfyUI): the ControlNets go to this folder's "
    "controlnets/, where the ControlNet list finds them."
)
CHOOSE_A_CONTROLNET = "Choose at least one ControlNet to download."


@dataclass(frozen=True, slots=True)
class FileRow:
    """One line of the files list; a group (the tokenizers) carries its files as children."""

    what: str
    file: str
    size: str
    on_disk: str
    children: tuple[FileRow, ...] = ()


def file_rows(plan: DownloadPlan) -> tuple[FileRow, ...]:
    """The model first, then the text encoders and the preview decoder; the small tokenizer files folded."""
    files = sorted(plan.files, key=lambda f: ROLE_ORDER.get(f.remote.role, len(ROLE_ORDER)))
    rows = [_row(f.remote.role, f) for f in files if f.remote.role != "tokenizer"]
    tokenizers = [f for f in files if f.remote.role == "tokenizer"]
    if tokenizers:
        size = sum(f.size for f in tokenizers)
        exact = all(f.complete or f.size_exact for f in tokenizers)
        rows.append(
            FileRow(
                "tokenizers",
                f"{len(tokenizers)} small files",
                format_bytes(size) if exact else f"≈ {format_bytes(size)}",
                ALREADY_HERE if all(f.complete for f in tokenizers) else "",
                tuple(_row("", f) for f in tokenizers),
            )
        )
    return tuple(rows)


def total_text(plan: DownloadPlan) -> str:
    about = "" if plan.sizes_exact else "about "
    text = f"Total: {about}{format_bytes(plan.total_bytes)}"
    if plan.present_bytes:
        text += (
            f" — {format_bytes(plan.present_bytes)} already here, {format_bytes(plan.remaining_bytes)} to go"
        )
    return text


def licence_text(source: VariantSource, controlnets: bool = False, model: bool = True) -> str:
    """Rich text: the variant (and the ControlNets, when chosen) is gated, and where its licence is accepted."""
    page = f"{HUB_WEBSITE}/{CONTROLNET_REPO}"
    if not model:
        return (
            "The SD3.5 ControlNets are gated. Before downloading, sign in to Hugging Face and accept the "
            f'Stability AI Community License on their page: <a href="{page}">{page}</a>'
        )
    text = (
        f"{source.label} is gated. Before downloading, sign in to Hugging Face and accept the Stability AI "
        f'Community License on the model\'s page: <a href="{source.page_url}">{source.page_url}</a>'
    )
    if controlnets:
        text += f' — and on the ControlNets\' page: <a href="{page}">{page}</a>'
    return text


def controlnet_choice_text(control_type: str) -> str:
    """The label of one ControlNet check box: its type, what it does, its published size."""
    size = format_bytes(controlnet_file(control_type).published_size)
    return f"{control_type.capitalize()} — {CONTROLNET_HINTS[control_type]} (≈ {size})"


def ready_text(label: str, destination: object, controlnets: tuple[str, ...]) -> str:
    """The message of a finished download; `label` "" for ControlNets only."""
    if not controlnets:
        return f"{label} is ready in {destination}."
    names = f"{', '.join(controlnets)} ControlNet{'s' if len(controlnets) > 1 else ''}"
    if not label:
        return f"The {names} {'are' if len(controlnets) > 1 else 'is'} ready in {destination}."
    return f"{label} and the {names} are ready in {destination}."


def token_texts(stored: bool) -> tuple[str, str]:
    """(the token field's placeholder, the hint under it), depending on whether a token is stored already."""
    return ("a token is stored", STORED_TOKEN_HINT) if stored else ("hf_…", NO_TOKEN_HINT)


def start_position(plan: DownloadPlan) -> int:
    """Where the progress bar starts: what is already on disk counts as done."""
    return round(plan.present_bytes / max(plan.total_bytes, 1) * PROGRESS_STEPS)


def progress_position(progress: DownloadProgress) -> int | None:
    """The progress bar's position, or None while the total is not known yet (the bar stays where it is)."""
    return round(progress.fraction * PROGRESS_STEPS) if progress.total_bytes else None


def sentence(message: str) -> str:
    """Download errors are written as clauses ("cannot reach …"); the dialog shows them as sentences."""
    message = message.strip()
    if not message:
        return "The download failed."
    message = message[0].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


def _row(what: str, planned: PlannedFile) -> FileRow:
    return FileRow(what, planned.local_path, size_text(planned), disk_text(planned))


def size_text(planned: PlannedFile) -> str:
    if planned.complete or planned.size_exact:
        return format_bytes(planned.size)
    return f"≈ {format_bytes(planned.size)}"


def disk_text(planned: PlannedFile) -> str:
    if planned.complete:
        return ALREADY_HERE
    if planned.elsewhere is not None:  # the other Large set's copy: linked at download time, not fetched
        return f"✓ in {planned.elsewhere.parent.parent.name} (linked)"
    if planned.present_bytes:
        return f"{format_bytes(planned.present_bytes)} so far"
    return ""
