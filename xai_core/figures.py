"""Figures to take away (teaching, reports): the radiograph beside one or two methods' maps, with a caption line.

The caption names the method(s), the pathology and its probability, the model version and
that the figure is for research use only; it is drawn into the pixels (a figure pasted into
slides loses its metadata) and also stored in the PNG's Description text chunk. Nothing
about the patient is drawn or stored. The animated figure (GIF) alternates the radiograph and
one map over it in frames of the same layout, the caption burned into each.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .labels import display_name
from .overlay import DEFAULT_COLORMAP, render_overlay, to_png_bytes

RESEARCH_ONLY = "Research use only - not for diagnosis"
BACKGROUND = (0, 0, 0)
TEXT = (255, 255, 255)
GAP = 8  # px between panels and around the text
FRAME_MS = 1000  # how long the animated figure shows each frame


def figure_caption(method_titles: Sequence[str], label: str, probability: float | None, model_version: str) -> str:
    """'Grad-CAM++ vs Integrated Gradients · Effusion (probability 0.42) · model 0.4.0 · Research use only - ...'."""
    finding = display_name(label) + ("" if probability is None else f" (probability {probability:.2f})")
    return " · ".join([" vs ".join(method_titles), finding, f"model {model_version}", RESEARCH_ONLY])


@dataclass(frozen=True)
class MethodFigure:
    """The radiograph, then each (title, map in [0, 1] at the radiograph's shape) over it, with a caption: side by
    side in one picture, or one after the other as an animation's frames. Nothing is drawn until asked for."""

    grey: np.ndarray
    maps: Sequence[tuple[str, np.ndarray]]
    caption: str
    opacity: float = 0.45
    colormap: str = DEFAULT_COLORMAP

    def side_by_side(self) -> np.ndarray:
        """uint8 (H', W', 3): the panels side by side under their titles, the caption (wrapped to fit) below."""
        return _composed(self._panels(), self.caption)

    def frames(self) -> list[np.ndarray]:
        """uint8 frames of one size, one panel each under its title, the caption below."""
        return [_composed([panel], self.caption) for panel in self._panels()]

    def png(self) -> bytes:
        return figure_png(self.side_by_side(), self.caption)

    def gif(self) -> bytes:
        return figure_gif(self.frames(), self.caption)

    def _panels(self) -> list[tuple[str, np.ndarray]]:
        """(title, RGB) panels of one shape: the radiograph alone, then each map over it."""
        return [("Radiograph", render_overlay(self.grey))] + [
            (title, render_overlay(self.grey, heatmap=heatmap, opacity=self.opacity, colormap=self.colormap))
            for title, heatmap in self.maps]


def figure_gif(frames: Sequence[np.ndarray], caption: str, *, frame_ms: int = FRAME_MS) -> bytes:
    """The frames as an endlessly looping GIF, the caption in its comment. Each frame gets its own 256-colour
    palette (a grey radiograph keeps all 256 grey levels); no dithering, so text stays sharp."""
    images = [Image.fromarray(frame).quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                              dither=Image.Dither.NONE) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0,
                   disposal=1, comment=caption.encode("utf-8"))
    return buffer.getvalue()


def _composed(panels: Sequence[tuple[str, np.ndarray]], caption: str) -> np.ndarray:
    """(title, RGB panel) pairs of one shape side by side under their titles, the caption wrapped below."""
    height, width = panels[0][1].shape[:2]
    font = ImageFont.load_default(size=max(12, round(min(height, width) / 28)))
    line = _line_height(font)
    figure_width = len(panels) * width + (len(panels) + 1) * GAP
    caption_lines = _wrapped(caption, font, figure_width - 2 * GAP)
    figure_height = GAP + line + GAP + height + GAP + len(caption_lines) * line + GAP
    figure = Image.new("RGB", (figure_width, figure_height), BACKGROUND)
    draw = ImageDraw.Draw(figure)
    for number, (title, rgb) in enumerate(panels):
        left = GAP + number * (width + GAP)
        draw.text((left, GAP), title, font=font, fill=TEXT)
        figure.paste(Image.fromarray(rgb), (left, 2 * GAP + line))
    for number, text in enumerate(caption_lines):
        draw.text((GAP, 3 * GAP + line + height + number * line), text, font=font, fill=TEXT)
    return np.asarray(figure)


def figure_png(figure: np.ndarray, caption: str) -> bytes:
    """The figure as PNG bytes, its caption in the Description text chunk (and nothing else about the image)."""
    return to_png_bytes(figure, text_metadata={"Software": "Chest X-ray explainability viewer",
                                               "Description": caption, "Disclaimer": RESEARCH_ONLY})


def _line_height(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    top, bottom = font.getbbox("Ag·")[1::2]
    return int(bottom - top) + GAP


def _wrapped(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split(" "):
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(candidate) <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines
