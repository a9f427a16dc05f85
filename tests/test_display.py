"""What the viewer's image pane is sent and the overlay it downloads (xai_core/display.py), on the sample film and
the shipped checkpoint: pictures at display size, the colour table, the raw maps, the layers drawn."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from xai_core import display
from xai_core.explanation import explain, saliency
from xai_core.imaging import read_xray
from xai_core.overlay import COLORMAPS, colorize, outline_width, saliency_for_display


@pytest.fixture(scope="module")
def sample(model, chest_dicom):
    xray = read_xray(chest_dicom)
    return xray, explain(model, xray)


def _decoded(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_the_radiograph_at_display_size_as_a_grey_png(sample):
    xray, _ = sample
    grey = display.display_grey(xray.pixels)
    assert max(grey.shape) == 1024 and grey.shape[0] / grey.shape[1] == pytest.approx(1955 / 1841, rel=0.01)
    assert grey.mean() == pytest.approx(xray.pixels.mean(), abs=0.01)  # area-averaged, not cropped
    picture = _decoded(display.radiograph_png(grey))
    assert picture.shape == grey.shape and picture.dtype == np.uint8
    assert np.abs(picture / 255.0 - grey).max() <= 1 / 255 + 1e-6
    url = display.data_url(display.radiograph_png(grey))
    assert url.startswith("data:image/png;base64,")
    assert np.array_equal(_decoded(base64.b64decode(url.split(",", 1)[1])), picture)


def test_the_raw_maps_travel_unchanged(sample):
    _, explanation = sample
    grids = display.raw_map_grids(explanation)
    assert list(grids) == list(explanation.labels)
    for label, cam in zip(explanation.labels, explanation.raw_cams, strict=True):
        entry = grids[label]
        values = np.frombuffer(base64.b64decode(entry["raw"]), "<f4").reshape(entry["rows"], entry["cols"])
        assert np.array_equal(values, cam)


@pytest.mark.parametrize("colormap", COLORMAPS)
def test_the_panes_colour_table_is_the_colour_maps(colormap):
    overlay = display.pane_overlay((1955, 1841), colormap)
    table = np.frombuffer(base64.b64decode(overlay["lut"]), np.uint8).reshape(256, 3)
    assert np.array_equal(table, colorize(np.linspace(0, 1, 256, dtype=np.float32), colormap))
    assert overlay["outline_width"] == outline_width((1955, 1841)) and overlay["colormap"] == colormap
    assert display.css_colour(tuple(overlay["outline_colour"])) == "#00ffff"
    assert display.css_colour(tuple(overlay["saliency_colour"])) == "#00ff00"


def test_the_overlay_draws_only_the_layers_asked_for(model, sample):
    xray, explanation = sample
    grey = display.display_grey(xray.pixels)
    label = max(explanation.labels, key=explanation.probability)
    drawing = {"opacity": 0.6, "colormap": "inferno", "threshold": 0.5}
    plain = display.explanation_overlay(grey, explanation, label, [], **drawing)
    assert (plain[..., 0] == plain[..., 1]).all() and (plain[..., 1] == plain[..., 2]).all()  # the film alone
    heatmap = display.explanation_overlay(grey, explanation, label, [display.HEATMAP], **drawing)
    attention = explanation.normalized_map(label, grey.shape)
    changed = (heatmap != plain).any(axis=2)
    assert changed[attention > 0.5].mean() > 0.99 and changed[attention == 0].mean() < 0.01
    outline = display.explanation_overlay(grey, explanation, label, [display.OUTLINE], **drawing)
    assert ((outline == display.OUTLINE_RGB).all(axis=2)).sum() > 100  # cyan lines
    gradients = saliency_for_display(saliency(model, xray, label))
    green = display.explanation_overlay(grey, explanation, label, [display.SALIENCY], saliency=gradients, **drawing)
    assert (green[..., 1].astype(int) - green[..., 0]).max() > 100  # the saliency's green
    picture = _decoded(display.saliency_png(gradients, grey.shape))
    assert picture.shape == grey.shape and picture.max() == 255
