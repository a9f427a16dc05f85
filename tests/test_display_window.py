"""The display window is a viewing aid: what it draws, on a real DICOM chest film, an 8-bit NIH PNG and a 16-bit PNG
made from the DICOM film; and that the model's result does not depend on it (the browser side: test_browser.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from xai_core import explain, read_xray
from xai_core.display_window import CODES, PRESET_PERCENTILES, Window, display_values
from xai_core.overlay import display_shape, resize_grey


@pytest.fixture(params=["DICOM", "8-bit PNG", "16-bit PNG"])
def film(request, chest_dicom, nih_test_images, chest_png16):
    return read_xray({"DICOM": chest_dicom, "8-bit PNG": nih_test_images[0], "16-bit PNG": chest_png16}[request.param])


def test_the_files_window_draws_what_the_model_reads(film):
    shape = display_shape(film.pixels.shape)
    values = display_values(film, shape)
    assert values.codes.shape == shape and values.codes.dtype == np.uint16
    assert values.codes.min() == 0 and values.codes.max() == CODES
    # DICOM LINEAR window tags against the LINEAR_EXACT display, 16-bit codes: far below one grey level of 255
    np.testing.assert_allclose(values.render(values.file_window), resize_grey(film.pixels, shape), atol=2e-3)
    np.testing.assert_allclose(values.render(values.file_window, invert=True),
                               1 - resize_grey(film.pixels, shape), atol=2e-3)
    if film.metadata.format == "DICOM":
        assert values.units == "modality values" and values.inverted  # RG1_UNCI is MONOCHROME1
        assert values.file_window == Window(15000.0, 30000.0)
    else:
        full_scale = 2 ** film.metadata.bits_stored - 1
        assert film.metadata.bits_stored == (16 if values.high > 255 else 8)
        assert values.units == "pixel values" and not values.inverted
        assert values.file_window == Window(full_scale / 2, full_scale)


def test_each_preset_spans_its_brightness_percentiles_of_the_film(film):
    values = display_values(film, display_shape(film.pixels.shape))
    assert set(values.presets) == set(PRESET_PERCENTILES) == {"Lung", "Mediastinum", "Bone", "Soft tissue"}
    brightness = -values.values() if values.inverted else values.values()  # MONOCHROME1: a higher value is darker
    for name, (darkest, brightest) in PRESET_PERCENTILES.items():
        window = values.presets[name]
        black, white = sorted(np.array([-1, 1]) * window.width / 2 + window.center * (-1 if values.inverted else 1))
        # the percentile's definition, with ties (an 8-bit film has many pixels of one value)
        assert np.mean(brightness < black) * 100 <= darkest + 1 <= np.mean(brightness <= black) * 100 + 2, name
        assert np.mean(brightness < white) * 100 <= brightest + 1 <= np.mean(brightness <= white) * 100 + 2, name
    lung, mediastinum = values.render(values.presets["Lung"]), values.render(values.presets["Mediastinum"])
    assert lung.mean() > values.render(values.file_window).mean() > mediastinum.mean()


def test_the_codes_picture_is_lossless(chest_dicom):
    values = display_values(read_xray(chest_dicom), (500, 470))
    rgb = np.asarray(Image.open(io.BytesIO(values.codes_png())).convert("RGB")).astype(np.uint16)
    np.testing.assert_array_equal((rgb[..., 0] << 8) | rgb[..., 1], values.codes)
    assert not rgb[..., 2].any()
    assert values.as_dict()["file_window"] == [15000.0, 30000.0]


def test_windowing_leaves_the_models_input_and_result_alone(model, film):
    before = explain(model, film)
    pixels = film.pixels.copy()
    values = display_values(film, display_shape(film.pixels.shape))
    for window in values.presets.values():
        values.render(window, invert=True)
    np.testing.assert_array_equal(film.pixels, pixels)
    after = explain(model, film)
    np.testing.assert_array_equal(after.probabilities, before.probabilities)
    np.testing.assert_array_equal(after.raw_cams, before.raw_cams)
