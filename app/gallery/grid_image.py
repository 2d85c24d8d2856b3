"""Labelled grids drawn with Pillow: the X/Y plot sheet and the export contact sheet."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)

BACKGROUND = (24, 24, 27)
TEXT = (232, 232, 236)
MUTED = (150, 150, 160)
EMPTY = (48, 48, 54)


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, fnt, width: int, max_lines: int = 2) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if draw.textlength(trial, font=fnt) <= width or not current:
            current = trial
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        while lines[-1] and draw.textlength(lines[-1] + "…", font=fnt) > width:
            lines[-1] = lines[-1][:-1]
        lines[-1] += "…"
    return lines


def _elide(draw: ImageDraw.ImageDraw, text: str, fnt, width: int) -> str:
    if draw.textlength(text, font=fnt) <= width:
        return text
    while text and draw.textlength(text + "…", font=fnt) > width:
        text = text[:-1]
    return text + "…"


def _fit(image: Image.Image | None, size: tuple[int, int]) -> Image.Image:
    cell = Image.new("RGB", size, EMPTY)
    if image is not None:
        scale = min(size[0] / image.width, size[1] / image.height)
        fitted = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        copy = image.convert("RGB").resize(fitted, Image.Resampling.LANCZOS)
        cell.paste(copy, ((size[0] - copy.width) // 2, (size[1] - copy.height) // 2))
    return cell


def labelled_grid(
    cells: Sequence[Sequence[Image.Image | None]],
    column_labels: Sequence[str],
    row_labels: Sequence[str],
    *,
    title: str = "",
    cell_size: tuple[int, int] = (384, 384),
    x_title: str = "",
    y_title: str = "",
) -> Image.Image:
    """An X/Y sheet: column labels on top, row labels on the left, a missing cell drawn as an empty tile."""
    fs = max(14, cell_size[1] // 18)
    fnt, title_font = font(fs), font(int(fs * 1.25))
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = max([int(scratch.textlength(label, font=fnt)) for label in row_labels] + [0])
    left = min(left, cell_size[0]) + 2 * fs
    head = (fs * 3 if title else 0) + fs * (5 if x_title else 3)
    gap = max(4, fs // 3)
    cols, rows = len(column_labels), len(row_labels)
    width = left + cols * (cell_size[0] + gap) + gap
    height = head + rows * (cell_size[1] + gap) + gap
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((gap * 2, fs), title, fill=TEXT, font=title_font)
    label_y = head - fs * 2
    for c, label in enumerate(column_labels):
        x = left + c * (cell_size[0] + gap) + cell_size[0] // 2
        draw.text((x, label_y), label, fill=TEXT, font=fnt, anchor="mm")
    if x_title:
        grid_centre = left + (cols * (cell_size[0] + gap)) // 2
        draw.text((grid_centre, label_y - int(fs * 1.5)), x_title, fill=MUTED, font=fnt, anchor="mm")
    if y_title:
        draw.text((left - fs, label_y), y_title, fill=MUTED, font=fnt, anchor="rm")
    for r, label in enumerate(row_labels):
        y = head + r * (cell_size[1] + gap) + cell_size[1] // 2
        draw.text((left - fs, y), label, fill=TEXT, font=fnt, anchor="rm")
        for c in range(cols):
            image = cells[r][c] if c < len(cells[r]) else None
            sheet.paste(
                _fit(image, cell_size), (left + c * (cell_size[0] + gap), head + r * (cell_size[1] + gap))
            )
    return sheet


def contact_sheet(
    items: Sequence[tuple[Image.Image | None, str]], *, columns: int = 6, cell: int = 256, title: str = ""
) -> Image.Image:
    """Thumbnails in a grid, each with up to three caption lines underneath ("\n" separates them; each line
    is shortened with "…" to the cell's width)."""
    fs = max(12, cell // 18)
    fnt = font(fs)
    caption_h = fs * 4
    gap = fs
    columns = max(1, min(columns, len(items) or 1))
    rows = max(1, -(-len(items) // columns))
    head = fs * 3 if title else gap
    sheet = Image.new(
        "RGB", (gap + columns * (cell + gap), head + rows * (cell + caption_h + gap)), BACKGROUND
    )
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((gap, fs), title, fill=TEXT, font=font(int(fs * 1.3)))
    for i, (image, caption) in enumerate(items):
        x = gap + (i % columns) * (cell + gap)
        y = head + (i // columns) * (cell + caption_h + gap)
        sheet.paste(_fit(image, (cell, cell)), (x, y))
        for n, line in enumerate(caption.split("\n")[:3]):
            text = _elide(draw, line, fnt, cell)
            draw.text(
                (x, y + cell + fs // 3 + n * int(fs * 1.2)), text, fill=TEXT if n == 0 else MUTED, font=fnt
            )
    return sheet
