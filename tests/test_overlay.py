import io
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xai_core.overlay import (
    ATTENTION_LEVELS,
    COLORMAPS,
    attention_level_image,
    colorize,
    legend_entries,
    normalize,
    outline_polygons,
    outline_width,
    render_overlay,
    threshold_mask,
    to_jpeg_bytes,
    to_png_bytes,
)

NIH_IMAGE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nih" / "images" / "00000061_012.png"


def nih_grey() -> np.ndarray:
    """A real radiograph as float32 [0, 1], or skip where the shared data is absent."""
    if not NIH_IMAGE.exists():
        pytest.skip(f"real NIH image not available at {NIH_IMAGE}")
    with Image.open(NIH_IMAGE) as image:
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def cone(shape, centre_row, centre_col, radius) -> np.ndarray:
    """1 at the centre falling linearly to 0.5 at `radius` px: its 0.5 level set is that circle."""
    rows, cols = np.indices(shape)
    distance = np.hypot(rows - centre_row, cols - centre_col)
    return np.clip(1.0 - distance / (2.0 * radius), 0.0, 1.0)


def shoelace(polygon: np.ndarray) -> float:
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1])))


@pytest.mark.parametrize("colormap", COLORMAPS)
def test_colorize_shape_dtype_and_distinct_endpoints(colormap):
    colours = colorize(np.array([[0.0, 0.5, 1.0], [-3.0, 2.0, np.nan]]), colormap)
    assert colours.shape == (2, 3, 3) and colours.dtype == np.uint8
    assert not np.array_equal(colours[0, 0], colours[0, 2])
    # Out-of-range values clip to the ends; NaN counts as no attention.
    np.testing.assert_array_equal(colours[1, 0], colours[0, 0])
    np.testing.assert_array_equal(colours[1, 1], colours[0, 2])
    np.testing.assert_array_equal(colours[1, 2], colours[0, 0])


def test_unknown_colormap_raises():
    with pytest.raises(ValueError):
        colorize(np.zeros((2, 2)), "rainbow-unicorn")


def test_normalize_min_max_and_constant_map():
    scaled = normalize(np.array([[2.0, 4.0], [6.0, 3.0]]))
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, [[0.0, 0.5], [1.0, 0.25]])
    np.testing.assert_array_equal(normalize(np.full((3, 3), 7.0)), np.zeros((3, 3)))
    np.testing.assert_array_equal(normalize(np.array([np.nan, 1.0, 3.0])), [0.0, 0.0, 1.0])


def test_attention_levels_follow_the_legend_bands():
    values = np.array([[0.0, 0.329, 0.33, 0.659, 0.66, 1.0]])
    np.testing.assert_array_equal(attention_level_image(values), [[0, 0, 1, 1, 2, 2]])
    assert [level.name for level in ATTENTION_LEVELS] == ["low", "medium", "high"]


@pytest.mark.parametrize("colormap", COLORMAPS)
def test_legend_entries(colormap):
    entries = legend_entries(colormap)
    assert len(entries) == len(ATTENTION_LEVELS)
    assert [name for name, _, _ in entries] == ["high", "medium", "low"]
    assert all(re.fullmatch(r"#[0-9a-f]{6}", colour) for _, _, colour in entries)
    assert len({colour for _, _, colour in entries}) == 3
    assert "0.66" in entries[0][1] and "0.33" in entries[2][1]


def test_zero_attention_keeps_the_radiograph_and_high_attention_changes_it():
    grey = nih_grey()
    heatmap = cone(grey.shape, 200, 260, 60)
    rgb = render_overlay(grey, heatmap=heatmap, opacity=0.5)
    assert rgb.shape == (*grey.shape, 3) and rgb.dtype == np.uint8
    expected_grey = np.round(grey * 255).astype(np.uint8)
    untouched = heatmap == 0
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel][untouched], expected_grey[untouched])
    hot = heatmap > 0.9
    assert np.abs(rgb[hot].astype(int) - expected_grey[hot][:, None]).max(axis=1).min() > 20


def test_full_opacity_peak_shows_the_colormap_and_saliency_its_own_hue():
    grey = np.full((20, 20), 0.5, dtype=np.float32)
    peak = np.zeros((20, 20))
    peak[5, 5] = 1.0
    heat = render_overlay(grey, heatmap=peak, opacity=1.0, colormap="viridis")
    np.testing.assert_array_equal(heat[5, 5], colorize(np.array([[1.0]]), "viridis")[0, 0])
    both = render_overlay(grey, heatmap=peak, saliency=peak[::-1], opacity=1.0, saliency_color=(0, 255, 0))
    np.testing.assert_array_equal(both[14, 5], [0, 255, 0])
    np.testing.assert_array_equal(both[5, 5], colorize(np.array([[1.0]]))[0, 0])


def test_opacity_zero_leaves_the_image_unchanged():
    grey = nih_grey()
    heatmap = cone(grey.shape, 250, 250, 100)
    plain = render_overlay(grey)
    faded = render_overlay(grey, heatmap=heatmap, saliency=heatmap, opacity=0.0)
    np.testing.assert_array_equal(plain, faded)
    np.testing.assert_array_equal(plain[:, :, 0], np.round(grey * 255).astype(np.uint8))


def test_outline_of_a_disc_is_one_polygon_of_the_disc_area():
    radius = 40.0
    polygons = outline_polygons(cone((200, 200), 100, 90, radius), 0.5)
    assert len(polygons) == 1
    polygon = polygons[0]
    np.testing.assert_array_equal(polygon[0], polygon[-1])
    assert shoelace(polygon) == pytest.approx(math.pi * radius**2, rel=0.02)
    # Continuous coordinates: pixel (row 100, column 90) has its centre at (90.5, 100.5).
    np.testing.assert_allclose(polygon[:-1].mean(axis=0), [90.5, 100.5], atol=0.1)


def test_region_touching_the_border_closes_along_the_edge():
    radius = 30.0
    polygons = outline_polygons(cone((100, 100), 50, 0, radius), 0.5)  # half a disc on the left edge
    assert len(polygons) == 1
    polygon = polygons[0]
    np.testing.assert_array_equal(polygon[0], polygon[-1])
    assert polygon[:, 0].min() == pytest.approx(0.0, abs=0.3)
    assert shoelace(polygon) == pytest.approx(threshold_mask(cone((100, 100), 50, 0, radius), 0.5).sum(), rel=0.05)


def test_outline_drops_small_fragments_and_keeps_holes():
    attention = np.zeros((60, 60))
    attention[10:40, 10:40] = 1.0
    attention[20:30, 20:30] = 0.0  # a hole
    attention[50, 50] = 1.0  # a one-pixel speck
    assert len(outline_polygons(attention, 0.5)) == 2
    assert len(outline_polygons(attention, 0.5, min_area_px=0.0)) == 3
    with pytest.raises(ValueError):
        outline_polygons(attention, 0.0)


def test_threshold_mask():
    np.testing.assert_array_equal(threshold_mask(np.array([0.2, 0.5, 0.9]), 0.5), [False, True, True])


def test_outline_is_drawn_on_the_threshold_boundary():
    grey = nih_grey()
    heatmap = cone(grey.shape, 300, 200, 50)
    rgb = render_overlay(grey, outline_map=heatmap, threshold=0.5, outline_color=(255, 0, 255))
    magenta = np.all(rgb == (255, 0, 255), axis=2)
    rows, cols = np.nonzero(magenta)
    distance = np.hypot(rows - 300, cols - 200)
    assert magenta.sum() > 2 * math.pi * 50  # a closed ring at least ~2 px wide
    assert np.all(np.abs(distance - 50) <= 3)
    untouched = np.hypot(*(np.indices(grey.shape) - np.array([300, 200])[:, None, None])) > 55
    np.testing.assert_array_equal(rgb[untouched], render_overlay(grey)[untouched])


def test_outline_width_grows_with_image_size():
    assert outline_width((512, 512)) == 2
    assert outline_width((2000, 1800)) >= 4


def test_mismatched_shapes_and_bad_opacity_raise():
    grey = np.zeros((30, 40))
    wrong = np.zeros((40, 30))
    for layer in ("heatmap", "saliency", "outline_map"):
        with pytest.raises(ValueError):
            render_overlay(grey, **{layer: wrong})
    with pytest.raises(ValueError):
        render_overlay(grey, heatmap=np.zeros((30, 40)), opacity=1.5)


def test_png_round_trip_carries_only_the_given_text():
    rgb = render_overlay(nih_grey(), heatmap=cone((512, 512), 256, 256, 80))
    metadata = {"model_version": "test-1", "label": "Effusion"}
    with Image.open(io.BytesIO(to_png_bytes(rgb, text_metadata=metadata))) as image:
        assert image.format == "PNG"
        np.testing.assert_array_equal(np.asarray(image), rgb)
        assert image.text == metadata
    with Image.open(io.BytesIO(to_png_bytes(rgb))) as image:
        assert image.text == {}
    with pytest.raises(ValueError):
        to_png_bytes(rgb.astype(np.float32))


def test_screen_jpeg_stays_close_to_the_overlay_and_keeps_the_outline_colour():
    grey = nih_grey()
    attention = cone(grey.shape, 256, 256, 80)
    rgb = render_overlay(grey, heatmap=attention, outline_map=attention, threshold=0.5)
    with Image.open(io.BytesIO(to_jpeg_bytes(rgb))) as image:
        assert image.format == "JPEG" and image.mode == "RGB"
        shown = np.asarray(image).astype(np.int16)
    assert shown.shape == rgb.shape
    assert float(np.abs(shown - rgb).mean()) < 2.0  # grey levels out of 255
    # The outline is 2 to 3 px wide: with chroma subsampling its cyan would bleed into the surrounding colours.
    line = np.all(rgb == (0, 255, 255), axis=2)
    assert line.sum() > 100
    hue_kept = (shown[line, 1] - shown[line, 0] > 150) & (shown[line, 2] - shown[line, 0] > 150)
    assert hue_kept.mean() > 0.9
    with pytest.raises(ValueError):
        to_jpeg_bytes(grey)


def test_saliency_for_display_puts_its_top_percent_at_full_strength(chest_dicom, model):
    from xai_core import read_xray, saliency
    from xai_core.overlay import saliency_for_display

    gradients = saliency(model, read_xray(chest_dicom), "Cardiomegaly")
    shown = saliency_for_display(gradients)
    assert shown.dtype == np.float32 and shown.min() >= 0 and shown.max() == 1
    assert np.mean(shown >= 1) == pytest.approx(0.01, abs=0.005)  # the top 1% of the film's gradients
    assert shown.mean() > 3 * gradients.mean()  # it no longer fades into the film
    order = np.argsort(gradients.ravel())
    assert np.all(np.diff(shown.ravel()[order]) >= 0)  # the ranking of pixels is kept
