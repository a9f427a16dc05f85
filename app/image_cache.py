"""What the page keeps per image in the process caches: the decoded image, its one explanation, its saliency maps
and the pictures its image pane is sent. Shared by every session showing the same image, never copied on a rerun
(a 2000 px XRay would cost 40 ms to copy), read-only so that no session can change another's, and forgotten after
an hour. Each is keyed by the image's sha256: the arguments named with a leading underscore are not hashed.

The engine is called through its modules (serving.explained, explanation.saliency), so that the page's tests can
count the forward passes and saliency maps it asks for.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from xai_core import display, serving
from xai_core import explanation as explanation_module
from xai_core.display_window import DisplayValues, display_values
from xai_core.explanation import Explanation
from xai_core.imaging import XRay, read_xray

CACHE_TTL_S = 3600  # images and their maps leave the process caches after an hour


@st.cache_resource(max_entries=8, ttl=CACHE_TTL_S, show_spinner=False)
def read_image(file_sha256: str, _data: bytes) -> XRay:
    xray = read_xray(_data)
    xray.pixels.setflags(write=False)
    return xray


@st.cache_resource(max_entries=8, ttl=CACHE_TTL_S, show_spinner=False)
def display_grey(image_sha256: str, _pixels: np.ndarray) -> np.ndarray:
    """The radiograph at display size as the model sees it (the file's own window), [0, 1]."""
    grey = display.display_grey(_pixels)
    grey.setflags(write=False)
    return grey


@st.cache_resource(max_entries=8, ttl=CACHE_TTL_S, show_spinner=False)
def window_values(image_sha256: str, _xray: XRay, shape: tuple[int, int]) -> DisplayValues:
    """What the reader's display window applies to, in the browser (the model never sees it)."""
    values = display_values(_xray, shape)
    values.codes.setflags(write=False)
    return values


@st.cache_data(max_entries=32, ttl=CACHE_TTL_S, show_spinner=False)
def explain_image(image_sha256: str, _xray: XRay) -> Explanation:
    """One forward pass per image, on the file's own pixels: no pathology, overlay or display window repeats it."""
    return serving.explained(_xray)


@st.cache_data(max_entries=16, ttl=CACHE_TTL_S, show_spinner=False)
def saliency_map(image_sha256: str, label: str, samples: int, _xray: XRay) -> np.ndarray:
    return explanation_module.saliency(serving.shared_model(), _xray, label, smoothgrad_samples=samples)


@st.cache_data(max_entries=8, ttl=CACHE_TTL_S, show_spinner=False)
def radiograph_png(image_sha256: str, _grey: np.ndarray) -> bytes:
    return display.radiograph_png(_grey)


@st.cache_data(max_entries=8, ttl=CACHE_TTL_S, show_spinner=False)
def codes_png(image_sha256: str, _values: DisplayValues) -> bytes:
    return _values.codes_png()


@st.cache_data(max_entries=16, ttl=CACHE_TTL_S, show_spinner=False)
def saliency_png(image_sha256: str, label: str, samples: int, _gradients: np.ndarray, shape: tuple[int, int]) -> bytes:
    return display.saliency_png(_gradients, shape)
