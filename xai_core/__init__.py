"""Chest X-ray explainability engine: 14-pathology ResNet-50, Grad-CAM++ for every label in one pass,
gradient saliency, attention outlines and alignment with radiologists' boxes.

Research and education use only; not for diagnosis.

    from xai_core import read_xray, load_model, explain
    model = load_model()                      # the shipped checkpoint, CUDA if present
    xray = read_xray("chest.dcm")             # PNG, JPEG or DICOM; de-identified metadata only
    result = explain(model, xray)             # 14 probabilities + 14 Grad-CAM++ maps
    heatmap = result.normalized_map("Cardiomegaly")
"""

from .errors import XRayError
from .explanation import Explanation, explain, saliency
from .imaging import XRay, read_xray
from .labels import PATHOLOGIES
from .model import XRayModel, load_model
from .overlay import outline_polygons, render_overlay

__all__ = [
    "PATHOLOGIES",
    "Explanation",
    "XRay",
    "XRayError",
    "XRayModel",
    "explain",
    "load_model",
    "outline_polygons",
    "read_xray",
    "render_overlay",
    "saliency",
]
