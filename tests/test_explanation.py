"""Grad-CAM++ for all 14 labels in one pass equals pytorch-grad-cam's, on the real checkpoint and real images."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from xai_core.explanation import _autograd_cams, _closed_form_cams, captured_output, explain, saliency
from xai_core.imaging import read_xray
from xai_core.labels import PATHOLOGIES


@pytest.fixture(scope="module")
def chest(chest_dicom):
    return read_xray(chest_dicom)


@pytest.fixture(scope="module")
def nih_case(nih_test_images):
    return read_xray(nih_test_images[0])


@pytest.mark.parametrize("image", ["chest", "nih_case"])
def test_all_14_maps_equal_pytorch_grad_cam_at_input_size(model, image, request):
    """At the network's input size both sides scale the same map at the input size: this is the library's exact output."""
    xray = request.getfixturevalue(image)
    inputs = model.input_spec.prepare(xray.pixels, model.device)
    size = model.input_spec.size
    ours = explain(model, xray).maps(normalized=True, shape=(size, size))
    network = model.network
    # The library needs the target layer's output in the autograd graph; its gradient is the same whichever
    # weights require one, and with the last block's alone the backward pass stops there (not at the stem).
    network.layer4[-1].requires_grad_(True)
    try:
        with GradCAMPlusPlus(model=network, target_layers=[network.layer4[-1]]) as cam:
            reference = np.stack([cam(input_tensor=inputs, targets=[ClassifierOutputTarget(i)])[0] for i in range(14)])
    finally:
        network.layer4[-1].requires_grad_(False)
    assert ours.shape == reference.shape == (14, size, size)
    assert np.abs(ours - reference).max() <= 1e-4
    # the maps are not trivially equal: labels differ from each other
    assert np.abs(ours[0] - ours[1]).max() > 1e-2


def test_probabilities_come_from_the_same_forward_pass_as_a_plain_one(model, chest):
    explanation = explain(model, chest)
    with torch.inference_mode():
        logits = model.network(model.input_spec.prepare(chest.pixels, model.device).contiguous(memory_format=torch.channels_last))
    np.testing.assert_allclose(explanation.logits, logits[0].numpy(), atol=1e-4)
    calibration = model.card.calibration.labels  # per-label Platt scaling from the card
    scale = np.array([calibration[label].scale for label in PATHOLOGIES])
    shift = np.array([calibration[label].shift for label in PATHOLOGIES])
    np.testing.assert_allclose(explanation.probabilities, 1 / (1 + np.exp(-(logits[0].numpy() * scale + shift))), atol=1e-5)
    assert explanation.labels == PATHOLOGIES
    assert explanation.model_version == model.version


def test_generic_autograd_path_equals_the_closed_form(model, nih_case):
    inputs = model.input_spec.prepare(nih_case.pixels, model.device)
    logits_fast, fast = _closed_form_cams(model.network, inputs)
    logits_slow, slow = _autograd_cams(model.network, inputs)
    torch.testing.assert_close(logits_slow, logits_fast, atol=1e-4, rtol=1e-4)
    scale = float(fast.max())
    assert float((fast - slow).abs().max()) <= 1e-4 * max(scale, 1.0)


def test_a_head_that_is_not_linear_takes_the_autograd_path(model, nih_case):
    side = model.input_spec.size // 32  # layer4's resolution at the model's input size

    class TwoLayerHead(nn.Module):
        def __init__(self, network):
            super().__init__()
            self.body = nn.Sequential(*list(network.children())[:-2])
            self.layer4 = network.layer4
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(2048 * side * side, 14))

        def forward(self, x):
            return self.head(self.body(x))

    from dataclasses import replace

    torch.manual_seed(0)
    network = TwoLayerHead(model.network).eval()
    explanation = explain(replace(model, network=network), nih_case)
    # a head that reads every position sees a different gradient at each: maps differ from the pooled head's
    assert explanation.raw_cams.shape == (14, side, side)
    assert np.isfinite(explanation.raw_cams).all()


def test_raw_and_normalised_maps(model, chest):
    explanation = explain(model, chest)
    label = PATHOLOGIES[int(np.argmax(explanation.probabilities))]
    raw, normalised = explanation.raw_map(label), explanation.normalized_map(label)
    assert raw.shape == normalised.shape == chest.pixels.shape
    assert normalised.min() == pytest.approx(0.0, abs=1e-6) and normalised.max() == pytest.approx(1.0, abs=1e-5)
    # Bilinear upsampling never exceeds the coarse maximum, and the pixel centre nearest to the peak cell's centre
    # lies within half a pixel of it: with non-negative maps the loss is at most that offset, in cells, per axis.
    (cells_y, cells_x), (height, width) = explanation.raw_cams.shape[-2:], chest.pixels.shape
    offset = 0.5 * cells_y / height + 0.5 * cells_x / width
    assert explanation.strength(label) * (1 - offset) <= raw.max() <= explanation.strength(label) * (1 + 1e-6)
    # Same ranking of pixels: normalising is monotone
    flat = np.argsort(raw.ravel()[::997])
    assert (np.diff(normalised.ravel()[::997][flat]) >= -1e-6).all()


def test_explain_accepts_a_plain_array_and_keeps_a_non_square_shape(model, nih_case):
    pixels = nih_case.pixels[:, 64:448]  # 512 x 384
    explanation = explain(model, pixels)
    assert explanation.image_shape == (512, 384)
    assert explanation.normalized_map("Pneumonia").shape == (512, 384)


def test_saliency_is_one_label_at_image_resolution(model, chest):
    first = saliency(model, chest, "Cardiomegaly")
    second = saliency(model, chest, "Pneumothorax")
    assert first.shape == chest.pixels.shape and first.dtype == np.float32
    assert first.min() == pytest.approx(0.0, abs=1e-6) and first.max() == pytest.approx(1.0, abs=1e-5)
    assert np.abs(first - second).mean() > 1e-3


def test_smoothgrad_is_reproducible_by_seed(model, nih_case):
    vanilla = saliency(model, nih_case, "Pneumonia")
    smooth = saliency(model, nih_case, "Pneumonia", smoothgrad_samples=4, seed=1)
    np.testing.assert_array_equal(smooth, saliency(model, nih_case, "Pneumonia", smoothgrad_samples=4, seed=1))
    assert np.abs(smooth - saliency(model, nih_case, "Pneumonia", smoothgrad_samples=4, seed=2)).max() > 1e-3
    assert np.abs(smooth - vanilla).mean() > 1e-3
    assert smooth.shape == vanilla.shape == nih_case.pixels.shape


def test_unknown_label_is_refused(model, chest):
    from xai_core.errors import XRayError

    with pytest.raises(XRayError):
        explain(model, chest).normalized_map("Broken leg")


def test_a_forward_pass_in_another_session_thread_is_not_captured_as_this_ones(model, chest, nih_case):
    """Sessions share one network: while one explain() holds its layer4 hook, another thread's pass must not be
    read as its activations, and an explanation made while another thread runs equals the one made alone."""
    network, spec = model.network, model.input_spec
    other_inputs = spec.prepare(nih_case.pixels, model.device)
    with torch.inference_mode(), captured_output(network.layer4) as outputs:
        worker = threading.Thread(target=lambda: network(other_inputs))
        worker.start()
        worker.join()
        assert outputs == []  # the other thread's pass went through layer4 unrecorded
        network(spec.prepare(chest.pixels, model.device))
        assert len(outputs) == 1
    alone = explain(model, chest)
    stop = threading.Event()

    def other_session() -> None:
        while not stop.is_set():
            with torch.inference_mode():
                network(other_inputs)

    worker = threading.Thread(target=other_session)
    worker.start()
    try:
        during = [explain(model, chest) for _ in range(3)]
    finally:
        stop.set()
        worker.join()
    for explanation in during:
        np.testing.assert_allclose(explanation.raw_cams, alone.raw_cams, rtol=1e-5, atol=1e-6)
