"""A self-contained HTML page showing a few images with float and int8 boxes/masks side by side.

Numbers say how much an int8 artifact lost; pictures show where: a missed item, a shifted box, a mask that
bleeds. Images are embedded as PNG data URIs so the page is one file.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from edgemb.tasks.detection import Detections

PALETTE = np.array([(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)], np.uint8)
SCALE = 2  # small training resolutions are upscaled for viewing
DRAW_SCORE = 0.25  # detections drawn from this score up (the page says so)


def _colour(label: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in PALETTE[1 + (label - 1) % (len(PALETTE) - 1)])


def draw_boxes(pixels: np.ndarray, detections: Detections, classes: tuple[str, ...] | None,
               min_score: float = DRAW_SCORE) -> Image.Image:
    """The image with every detection scoring at least `min_score` drawn as a labelled box."""
    image = Image.fromarray(pixels).resize((pixels.shape[1] * SCALE, pixels.shape[0] * SCALE), Image.NEAREST)
    draw = ImageDraw.Draw(image)
    shown = detections.above(min_score)
    for box, score, label in zip(shown.boxes, shown.scores, shown.labels, strict=True):
        colour = _colour(int(label))
        draw.rectangle([float(v) * SCALE for v in box], outline=colour, width=2)
        name = classes[int(label)] if classes and int(label) < len(classes) else str(int(label))
        draw.text((float(box[0]) * SCALE + 3, float(box[1]) * SCALE + 2), f"{name} {score:.2f}", fill=colour)
    return image


def draw_mask(pixels: np.ndarray, mask: np.ndarray) -> Image.Image:
    """The image with its class mask blended over it (background left as is)."""
    colours = PALETTE[np.where(mask > 0, 1 + (mask.astype(np.int64) - 1) % (len(PALETTE) - 1), 0)]
    blended = np.where(mask[..., None] > 0, (0.45 * pixels + 0.55 * colours), pixels).astype(np.uint8)
    return Image.fromarray(blended).resize((pixels.shape[1] * SCALE, pixels.shape[0] * SCALE), Image.NEAREST)


def _uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def unnormalize(x: np.ndarray, pp: Any) -> np.ndarray:
    """A preprocessed CHW sample back to uint8 HWC pixels for drawing."""
    pixels = x.transpose(1, 2, 0) * np.asarray(pp.std, np.float32) + np.asarray(pp.mean, np.float32)
    return (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def comparison_page(title: str, pixels: np.ndarray, columns: dict[str, list[Any]],
                    classes: tuple[str, ...] | None, summary: list[str]) -> str:
    """HTML with one row per image and one column per result set (e.g. truth, float, onnxruntime int8)."""
    head = "".join(f"<th>{html.escape(name)}</th>" for name in columns)
    rows = []
    for i, image in enumerate(pixels):
        cells = []
        for results in columns.values():
            item = results[i]
            picture = draw_boxes(image, item, classes) if isinstance(item, Detections) else draw_mask(image, item)
            cells.append(f'<td><img src="{_uri(picture)}" alt="image {i}"></td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    notes = "".join(f"<li>{html.escape(line)}</li>" for line in
                    [*summary, f"boxes drawn from score {DRAW_SCORE} up; masks drawn over the image"])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif}td{padding:4px}img{image-rendering:pixelated}</style></head>"
            f"<body><h1>{html.escape(title)}</h1><ul>{notes}</ul><table><tr>{head}</tr>{''.join(rows)}</table>"
            "</body></html>")
