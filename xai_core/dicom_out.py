"""Results as DICOM objects a PACS already shows: a Secondary Capture and a TID 1500 Structured Report.

Both objects join the source radiograph's study (its Study Instance UID, patient and general study modules are
copied from the source header: dicom_source), each in a new series with new UIDs, so a PACS files them beside
the film:

- the Secondary Capture (here) is the radiograph with exactly the overlay the reader was shown (``BurnedOverlay``:
  heatmap, saliency, outline or none, with their opacity and outline threshold) burned in, under a band of words:
  ``RESEARCH_ONLY`` and the model version, the pathology's probability against the operating point the reader
  flagged at, and which overlay it is; the same words and the verdict are in its Image Comments;
- the Comprehensive 3D SR (dicom_sr) holds every pathology's probability, the operating point's threshold,
  whether the probability reaches it, the verdict, and its attention outlines.

Both take each pathology's flag, threshold and verdict from `findings.findings`, as the page, the command line's
report and the JSON record do, so none of them can read one way while the others read another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from .dicom_source import (
    MANUFACTURER,
    RESEARCH_ONLY,
    copy_patient_and_study,
    image_reference,
    laterality,
    patient_orientation,
    quiet_about_names,
    to_bytes,
)
from .dicom_sr import structured_report
from .display import HEATMAP, OUTLINE, SALIENCY, explanation_overlay
from .errors import XRayError
from .explanation import Explanation
from .findings import findings
from .imaging import XRay
from .labels import PATHOLOGIES, display_name, require_label
from .model import XRayModel
from .operating_points import HIGH_SPECIFICITY
from .overlay import DEFAULT_COLORMAP, saliency_for_display

SECONDARY_CAPTURE_SERIES_NUMBER = 9901
OVERLAY_LAYERS = (HEATMAP, SALIENCY, OUTLINE)  # the page's layers (display), in drawing order


@dataclass(frozen=True)
class DicomResults:
    """The two objects made for one explained radiograph."""

    secondary_capture: Dataset
    structured_report: Dataset

    def datasets(self) -> tuple[Dataset, Dataset]:
        return self.secondary_capture, self.structured_report


@dataclass(frozen=True, eq=False)
class BurnedOverlay:
    """What the Secondary Capture burns in over the radiograph: the layers the reader was shown and their settings.

    The defaults are the page's: the Grad-CAM++ heatmap alone at opacity 0.5. `saliency` is the gradient saliency
    the reader saw (explain.saliency, at the film's resolution; scaled for display here as on the page); it is
    needed, and only used, when SALIENCY is among the layers.
    """

    layers: tuple[str, ...] = (HEATMAP,)
    opacity: float = 0.5
    outline_threshold: float = 0.5
    colormap: str = DEFAULT_COLORMAP
    saliency: np.ndarray | None = None
    saliency_method: str = "gradient saliency"

    def __post_init__(self) -> None:
        unknown = [layer for layer in self.layers if layer not in OVERLAY_LAYERS]
        if unknown:
            raise XRayError(f"Unknown overlay layer {', '.join(unknown)}: choose among {', '.join(OVERLAY_LAYERS)}.")
        if SALIENCY in self.layers and self.saliency is None:
            raise XRayError("The saliency layer needs the saliency map the reader was shown.")
        if not 0.0 <= self.opacity <= 1.0 or not 0.0 < self.outline_threshold <= 1.0:
            raise XRayError("The overlay's opacity must lie in [0, 1] and its outline threshold in (0, 1].")
        object.__setattr__(self, "layers", tuple(layer for layer in OVERLAY_LAYERS if layer in self.layers))

    def describe(self) -> str:
        """Which overlay it is, in words, e.g. "Grad-CAM++ heatmap (inferno) at opacity 0.50, outline at 0.50"."""
        blended = [name for layer, name in ((HEATMAP, f"Grad-CAM++ heatmap ({self.colormap})"),
                                            (SALIENCY, self.saliency_method)) if layer in self.layers]
        parts = [f"{' + '.join(blended)} at opacity {self.opacity:.2f}"] if blended else []
        if OUTLINE in self.layers:
            parts.append(f"Grad-CAM++ outline at {self.outline_threshold:.2f} of the map's maximum")
        return ", ".join(parts) if parts else "no overlay (the radiograph alone)"


def dicom_results(
    source: Dataset,
    xray: XRay,
    explanation: Explanation,
    model: XRayModel,
    *,
    label: str,
    labels: tuple[str, ...] = PATHOLOGIES,
    overlay: BurnedOverlay = BurnedOverlay(),
    point: str = HIGH_SPECIFICITY,
) -> DicomResults:
    """The Secondary Capture of `label` with `overlay`, and the SR of every label in `labels`, both against the
    model card's operating `point` (the one the reader flagged at)."""
    return DicomResults(
        secondary_capture=secondary_capture(source, xray, explanation, model, label=label, overlay=overlay,
                                            point=point),
        structured_report=structured_report(source, explanation, model, labels=labels, point=point,
                                            outline_threshold=overlay.outline_threshold),
    )


def secondary_capture(
    source: Dataset,
    xray: XRay,
    explanation: Explanation,
    model: XRayModel,
    *,
    label: str,
    overlay: BurnedOverlay = BurnedOverlay(),
    point: str = HIGH_SPECIFICITY,
) -> Dataset:
    """The radiograph with `overlay` for `label` burned in, under the research-use notice, the finding against the
    operating point and which overlay it is."""
    label = require_label(label)
    rgb = explanation_overlay(  # as the page draws it, at the film's own resolution
        xray.pixels, explanation, label, overlay.layers,
        saliency=saliency_for_display(overlay.saliency) if SALIENCY in overlay.layers else None,
        opacity=overlay.opacity, colormap=overlay.colormap, threshold=overlay.outline_threshold)
    (finding,) = (found for found in findings(explanation, model.card, point) if found.label == label)
    flag = f"{finding.name}: probability {finding.probability:.3f}, {finding.flag_words()}"
    shown = f"Overlay: {overlay.describe()}"
    with quiet_about_names():
        image = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source,
            pixel_array=_burn_in(rgb, [f"{RESEARCH_ONLY} | model {model.version}", flag, shown]),
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=hd.UID(),
            series_number=SECONDARY_CAPTURE_SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            patient_orientation=patient_orientation(source),
            transfer_syntax_uid=ExplicitVRLittleEndian,
        )
    copy_patient_and_study(source, image)
    image.BodyPartExamined = source.get("BodyPartExamined", "")
    if laterality(source):
        image.Laterality = laterality(source)
    image.BurnedInAnnotation = "YES"
    image.ImageComments = _in_default_repertoire(
        f"{RESEARCH_ONLY}. {flag}; evidence on test films: {finding.verdict_words}. {shown}.")
    image.SeriesDescription = f"XAI overlay - {RESEARCH_ONLY}"
    image.DerivationDescription = f"{overlay.describe()}; model {model.version}, {display_name(label)}"[:1024]
    image.SourceImageSequence = [image_reference(source)]
    return image


def _in_default_repertoire(text: str) -> str:
    """`text` in DICOM's default character repertoire (ASCII), e.g. the verdict's en dash as a hyphen: the Secondary
    Capture declares no other character set."""
    return text.translate({0x2013: "-", 0x2014: "-"}).encode("ascii", "replace").decode("ascii")


def write_results(results: DicomResults, folder: Path, stem: str) -> list[Path]:
    """Write <stem>_sc.dcm and <stem>_sr.dcm into folder; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}_sc.dcm", folder / f"{stem}_sr.dcm"]
    for path, dataset in zip(paths, results.datasets()):
        path.write_bytes(to_bytes(dataset))
    return paths


def _burn_in(rgb: np.ndarray, lines: list[str]) -> np.ndarray:
    """The lines in white on a black band along the top, in one font size small enough for the widest line
    (down to 10 px); a line that still does not fit is left out, except the first (the research-use notice)."""
    width = rgb.shape[1]
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    size = max(12, width // 60)
    font = ImageFont.load_default(size=size)
    while size > 10 and max(draw.textlength(line, font=font) for line in lines) + 2 * max(4, size // 3) > width:
        size -= 1
        font = ImageFont.load_default(size=size)
    margin = max(4, size // 3)
    kept = [line for number, line in enumerate(lines)
            if number == 0 or draw.textlength(line, font=font) + 2 * margin <= width]
    left, top, _right, bottom = draw.textbbox((0, 0), "Ag", font=font)
    step = bottom - top + margin
    draw.rectangle((0, 0, width, len(kept) * step + margin), fill=(0, 0, 0))
    for number, line in enumerate(kept):
        draw.text((margin - left, margin - top + number * step), line, font=font, fill=(255, 255, 255))
    return np.asarray(image)


