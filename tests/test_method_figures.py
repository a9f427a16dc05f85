"""Figures to take away (xai_core.figures) from `python -m xai_core explain --figure / --gif`, on the real checkpoint
and the real sample chest CR: what the files hold, pixel for pixel where that can be known."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from xai_core.__main__ import main
from xai_core.explanation import explain
from xai_core.figures import FRAME_MS, GAP, RESEARCH_ONLY, MethodFigure, figure_caption
from xai_core.imaging import read_xray
from xai_core.methods import attribute
from xai_core.overlay import display_shape, render_overlay, resize_grey

LABEL, METHOD, TITLE = "Effusion", "grad_cam", "Grad-CAM"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xai_core", "explain", *args, "--device", "cpu"],
                          check=False, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def expected(model, chest_dicom):
    """What the files should show, drawn in this process: the display-size film, the map over it, the caption."""
    xray = read_xray(chest_dicom)
    shape = display_shape(xray.pixels.shape)
    grey = resize_grey(xray.pixels, shape)
    heatmap = attribute(model, xray, LABEL, METHOD).normalized_map(LABEL, shape)
    caption = figure_caption([TITLE], LABEL, explain(model, xray).probability(LABEL), model.version)
    return {"grey": grey, "heatmap": heatmap, "caption": caption, "shape": shape,
            "radiograph": render_overlay(grey), "overlay": render_overlay(grey, heatmap=heatmap, opacity=0.5)}


@pytest.fixture(scope="module")
def written(chest_dicom, tmp_path_factory):
    folder = tmp_path_factory.mktemp("figures")
    result = _run(str(chest_dicom), "--figure", str(folder / "figure.png"), "--gif", str(folder / "figure.gif"),
                  "--labels", LABEL, "--method", METHOD)
    assert result.returncode == 0, result.stderr
    return folder


def _panel_top(picture: np.ndarray, panel: np.ndarray) -> int:
    height, width = panel.shape[:2]
    return next(row for row in range(picture.shape[0] - height)
                if np.abs(picture[row:row + height, GAP:GAP + width].astype(int) - panel).mean() < 1.0)


def _text_rows(region: np.ndarray) -> np.ndarray:
    return np.flatnonzero((region > 128).any(axis=(1, 2)))


def test_method_figure_from_the_command_line_shows_radiograph_and_map_with_the_caption_burned_in(written, expected):
    picture = Image.open(written / "figure.png")
    assert picture.text["Description"] == expected["caption"] and picture.text["Disclaimer"] == RESEARCH_ONLY
    assert expected["caption"].startswith(f"{TITLE} · {LABEL} (probability 0.")
    assert expected["caption"].endswith(RESEARCH_ONLY)
    figure = np.asarray(picture.convert("RGB"))
    height, width = expected["shape"]
    assert max(height, width) == 1024  # the page's display size, not the 1955 x 1841 film
    assert figure.shape[1] == 2 * width + 3 * GAP  # radiograph and one map, side by side
    top = _panel_top(figure, expected["radiograph"])
    np.testing.assert_array_equal(figure[top:top + height, GAP:GAP + width], expected["radiograph"])
    overlay = figure[top:top + height, 2 * GAP + width:2 * GAP + 2 * width].astype(int)
    assert np.abs(overlay - expected["overlay"]).max() <= 2  # the map of another process: last-bit differences
    hot = expected["heatmap"] >= 0.5  # and it is a map, not the film again: coloured where the map is strong
    assert hot.any() and np.abs(overlay - expected["radiograph"])[hot].mean() > 15
    assert _text_rows(figure[GAP:top]).size > 0  # the panel titles
    caption, line = figure[top + height + GAP:], top - 2 * GAP  # the caption's lines are as tall as the titles'
    lines, rest = divmod(caption.shape[0] - GAP, line)
    assert lines >= 1 and rest == 0
    for number in range(lines):  # no caption line is blank, the last (with the disclaimer's end) included
        assert _text_rows(caption[number * line:(number + 1) * line]).size > line // 3, number
    figure = MethodFigure(expected["grey"], [(TITLE, expected["heatmap"])], expected["caption"], opacity=0.5)
    drawn = figure.side_by_side()
    np.testing.assert_array_equal(caption, drawn[top + height + GAP:])  # that caption, disclaimer included


def test_method_gif_from_the_command_line_alternates_radiograph_and_map(written, expected):
    animation = Image.open(written / "figure.gif")
    assert animation.n_frames == 2 and animation.info["loop"] == 0
    assert animation.info["comment"].decode("utf-8") == expected["caption"]
    frames = []
    for number in range(animation.n_frames):
        animation.seek(number)
        assert animation.info["duration"] == FRAME_MS
        frames.append(np.asarray(animation.convert("RGB")).astype(int))
    drawn = MethodFigure(expected["grey"], [(TITLE, expected["heatmap"])], expected["caption"], opacity=0.5).frames()
    assert frames[0].shape == frames[1].shape == drawn[0].shape == drawn[1].shape
    height, width = expected["shape"]
    top = _panel_top(frames[0], expected["radiograph"])
    panels = [frame[top:top + height, GAP:GAP + width] for frame in frames]
    np.testing.assert_array_equal(panels[0], expected["radiograph"])  # the first frame is the film, every grey kept
    assert np.abs(panels[1] - expected["overlay"]).mean() < 2.0  # the second, the map over it (256 colours)
    hot = expected["heatmap"] >= 0.5
    assert np.abs(panels[1] - panels[0])[hot].mean() > 15 and (panels[1] != panels[0]).any(axis=2).mean() > 0.05
    for frame, reference in zip(frames, drawn):  # both frames carry the caption, disclaimer included
        caption = frame[top + height + GAP:]
        assert _text_rows(caption).size > 0
        assert np.abs(caption - reference[top + height + GAP:]).mean() < 1.0


def test_method_figure_of_a_slow_method_shows_progress_and_the_gif_alone_needs_no_out_folder(chest_dicom, tmp_path):
    result = _run(str(chest_dicom), "--gif", str(tmp_path / "smoothgrad.gif"), "--labels", LABEL,
                  "--method", "smoothgrad")
    assert result.returncode == 0, result.stderr
    assert f"SmoothGrad, {LABEL}" in result.stderr and "16/16" in result.stderr  # the bar, in images run forward
    assert Image.open(tmp_path / "smoothgrad.gif").n_frames == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["smoothgrad.gif"]


@pytest.mark.parametrize("images, arguments, message", [
    (2, ["--figure", "{out}/two.png"], "give one image"),
    (1, ["--gif", "{out}/a.gif", "--method", "phrenology"], "'phrenology' is not an explanation method"),
    (1, [], "--out DIR, --figure OUT.png or --gif OUT.gif"),
])
def test_method_figure_refusals_are_clear_and_write_nothing(chest_dicom, tmp_path, capsys, images, arguments, message):
    """Through the command's own entry point, in this process (the commands above run it as a user would): a
    refusal is exit status 2 with the reason, and no file."""
    with pytest.raises(SystemExit) as exited:
        main(["explain", *[str(chest_dicom)] * images, *[argument.format(out=tmp_path) for argument in arguments],
              "--device", "cpu"])
    assert exited.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
