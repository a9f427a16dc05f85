"""Explanation methods (xai_core.methods) and their checks (xai_core.faithfulness), on the real checkpoint.

Closed forms equal pytorch-grad-cam; Integrated Gradients is complete; occlusion and Kernel SHAP
find the one patch a synthetic model reads; the randomisation check changes Grad-CAM++ and flags an
input-only edge detector. Inputs are small wherever the claim does not depend on the size.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
import torch
from captum.attr import GuidedGradCam
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from skimage.filters import sobel
from torch import nn

from xai_core.__main__ import build_parser, main
from xai_core.alignment import Box
from xai_core.errors import XRayError
from xai_core.explanation import explain, saliency
from xai_core.faithfulness import faithfulness, random_controls, sanity_check
from xai_core.figures import GAP, MethodFigure, figure_caption, figure_png
from xai_core.imaging import read_xray
from xai_core.labels import PATHOLOGIES
from xai_core.map_agreement import map_agreement
from xai_core.method_evaluation import compare_methods, format_comparison
from xai_core.method_jobs import JobState, start_method_job
from xai_core.methods import (
    BATCH,
    KERNEL_SHAP_SAMPLES,
    METHODS,
    GreyInputNetwork,
    attribute,
    class_activation_maps,
    counted_forward_passes,
    grad_cam,
    grey_input,
    integrated_gradients,
    planned_forward_passes,
)
from xai_core.model import XRayModel
from xai_core.overlay import display_shape, render_overlay, resize_grey
from xai_core.preprocessing import InputSpec

SMALL = 64  # input size for claims that hold at any size
PATCH = (slice(16, 32), slice(32, 48))  # rows, columns of the one patch the synthetic model reads
CHEAP_OPTIONS = {
    "smoothgrad": {"samples": 2},
    "integrated_gradients": {"steps": 4},
    "gradient_shap": {"samples": 2},
    "occlusion": {"segments": 16},
    "kernel_shap": {"segments": 16, "samples": 24},
}


@pytest.fixture(scope="module")
def chest(chest_dicom):
    return read_xray(chest_dicom)


@pytest.fixture(scope="module")
def small_model(model) -> XRayModel:
    """The real checkpoint reading a 64 x 64 film: same weights, 2 x 2 grid at layer4."""
    return replace(model, input_spec=InputSpec(size=SMALL, mean=model.input_spec.mean, std=model.input_spec.std))


class PatchReader(nn.Module):
    """Every label's logit is the mean grey of one patch: nothing outside it matters."""

    def __init__(self, spec: InputSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        grey = inputs[:, 0] * self.spec.std + self.spec.mean
        return (8 * grey[:, PATCH[0], PATCH[1]].mean(dim=(1, 2)) - 4)[:, None].expand(-1, len(PATHOLOGIES))


@pytest.fixture(scope="module")
def patch_model(model) -> XRayModel:
    """The real checkpoint's card (labels, calibration) over a network that reads one patch of a 64 x 64 film."""
    spec = InputSpec(size=SMALL)
    return replace(model, network=PatchReader(spec), input_spec=spec)


@pytest.fixture(scope="module")
def patch_film() -> np.ndarray:
    """A smooth film with a brighter square where the synthetic model reads, at the input size."""
    rows, columns = np.mgrid[0:SMALL, 0:SMALL] / SMALL
    film = (0.2 + 0.3 * rows + 0.1 * columns).astype(np.float32)
    film[PATCH] = 0.9
    return film


def _inside_patch(attribution_map: np.ndarray) -> bool:
    row, column = np.unravel_index(int(np.argmax(attribution_map)), attribution_map.shape)
    return PATCH[0].start <= row < PATCH[0].stop and PATCH[1].start <= column < PATCH[1].stop


def test_grad_cam_method_equals_pytorch_grad_cam(model, chest):
    """Compared at the network's input size, where both sides scale the same map: the library's exact output,
    for all 14 labels."""
    size = model.input_spec.size
    ours = attribute(model, chest, PATHOLOGIES, "grad_cam")
    assert ours.forward_passes == 1  # all 14 labels from one forward pass, no backward
    labels = PATHOLOGIES
    network = model.network
    inputs = model.input_spec.prepare(chest.pixels, model.device)
    # The library needs the target layer's output in the autograd graph; its gradient is the same whichever
    # weights require one, and with the last block's alone the backward pass stops there (not at the stem).
    network.layer4[-1].requires_grad_(True)
    try:
        with GradCAM(model=network, target_layers=[network.layer4[-1]]) as cam:
            targets = [ClassifierOutputTarget(PATHOLOGIES.index(label)) for label in labels]
            reference = np.stack([cam(input_tensor=inputs, targets=[target])[0] for target in targets])
    finally:
        network.layer4[-1].requires_grad_(False)
    maps = np.stack([ours.normalized_map(label, (size, size)) for label in labels])
    assert maps.shape == reference.shape == (len(labels), size, size)
    assert np.abs(maps - reference).max() <= 1e-5
    assert np.abs(maps[0] - maps[1]).max() > 1e-2  # labels differ: the equality is not trivial


def test_cam_method_is_signed_and_its_positive_part_is_grad_cam(model, chest):
    """CAM = sum_k W[c,k] A_k and Grad-CAM = relu(CAM) / (h w): so scaled, CAM's positive part is the library's map."""
    indices = tuple(range(14))
    cams = class_activation_maps(model, chest.pixels, indices)
    grad_cams = grad_cam(model, chest.pixels, indices)
    h, w = cams.shape[-2:]
    torch.testing.assert_close(cams.clamp(min=0) / (h * w), grad_cams, rtol=1e-6, atol=1e-7)
    assert float(cams.min()) < 0 < float(cams.max())  # negative evidence is kept, unlike Grad-CAM
    at_image = attribute(model, chest, "Effusion", "cam")
    assert at_image.map("Effusion").shape == chest.pixels.shape and at_image.forward_passes == 1


def test_integrated_gradients_completeness_at_64_steps(small_model, chest):
    """Attributions sum to f(film) - f(black film) within 5%: the real weights on a 64 x 64 film, the two
    labels whose logits move most (completeness holds for any label; two keep the test fast)."""
    grey = grey_input(small_model, chest.pixels)
    with torch.inference_mode():
        logits = GreyInputNetwork(small_model)(torch.cat([grey, torch.zeros_like(grey)]))
    differences = (logits[0] - logits[1]).numpy()
    indices = tuple(int(i) for i in np.argsort(-np.abs(differences))[:2])
    assert np.abs(differences[list(indices)]).min() > 0.3  # a difference worth 5% of
    totals = integrated_gradients(small_model, chest.pixels, indices, steps=64).sum(dim=(1, 2)).numpy()
    np.testing.assert_allclose(totals, differences[list(indices)], rtol=0.05)


@pytest.mark.parametrize("method", ["occlusion", "kernel_shap"])
def test_superpixel_method_puts_its_maximum_in_the_one_patch_the_model_reads(patch_model, patch_film, method):
    options = {"samples": 120} if method == "kernel_shap" else {}
    attribution = attribute(patch_model, patch_film, "Effusion", method, options=options)
    raw = attribution.map("Effusion")
    assert raw.shape == patch_film.shape
    assert _inside_patch(raw)
    outside = np.ones_like(raw, dtype=bool)
    outside[PATCH] = False
    assert np.abs(raw[outside]).max() < 0.1 * raw.max()


@pytest.mark.parametrize("method", ["gradient_shap", "kernel_shap"])
def test_sampling_method_repeats_for_its_seed_and_leaves_the_callers_random_state(small_model, chest, method):
    pixels = chest.pixels[::16, ::16]

    def drawn(seed: int) -> np.ndarray:
        options = {**CHEAP_OPTIONS[method], "seed": seed}
        return attribute(small_model, pixels, "Effusion", method, options=options).map("Effusion")

    torch.manual_seed(1234)
    np.random.seed(1234)  # the global generator Captum draws from
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    first = drawn(0)
    assert torch.equal(torch.random.get_rng_state(), torch_state)  # the caller's draws are not disturbed
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])
    np.testing.assert_array_equal(drawn(0), first)
    assert not np.array_equal(drawn(1), first)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_gives_a_map_at_the_image_resolution_with_its_cost(small_model, chest, method):
    pixels = chest.pixels[::16, ::16]  # a 123 x 116 film: not the input size, not square
    labels = ["Effusion", "Cardiomegaly"]
    attribution = attribute(small_model, pixels, labels, method, options=CHEAP_OPTIONS.get(method))
    # the progress bar's length is the images the method really runs
    assert attribution.forward_passes == planned_forward_passes(small_model, pixels, labels, method,
                                                                options=CHEAP_OPTIONS.get(method))
    assert attribution.maps.shape[0] == 2 and attribution.maps.dtype == np.float32
    assert np.isfinite(attribution.maps).all()
    assert attribution.map("Effusion").shape == pixels.shape
    shown = attribution.normalized_map("Cardiomegaly")
    assert shown.shape == pixels.shape and 0.0 <= shown.min() and shown.max() <= 1.0
    assert attribution.seconds > 0 and attribution.forward_passes >= 1
    if METHODS[method].one_pass:
        assert attribution.forward_passes == 1


def test_method_costs_are_counted_in_forward_passes(small_model, chest):
    assert attribute(small_model, chest, "Effusion", "integrated_gradients", options={"steps": 8}).forward_passes == 8
    assert attribute(small_model, chest, "Effusion", "smoothgrad", options={"samples": 3}).forward_passes == 3


def test_unknown_method_or_label_is_a_clear_error(small_model, chest):
    with pytest.raises(XRayError, match="not an explanation method"):
        attribute(small_model, chest, "Effusion", "lime")
    with pytest.raises(XRayError, match="14 pathologies"):
        attribute(small_model, chest, "Broken leg", "grad_cam")
    with pytest.raises(XRayError, match="at least one pathology"):
        attribute(small_model, chest, [], "grad_cam")
    attribution = attribute(small_model, chest, "Effusion", "grad_cam")
    with pytest.raises(XRayError, match="computed for Effusion"):
        attribution.map("Cardiomegaly")


def test_sanity_check_counts_a_map_gone_blank_as_changed(model, chest):
    """Grad-CAM's relu can leave nothing once the head is re-drawn: a blank map is not a surviving map."""

    def blank_once_randomised(current: XRayModel, pixels: np.ndarray, label: str) -> np.ndarray:
        return explain(model, pixels).normalized_map(label) if current is model else np.zeros_like(pixels)

    check = sanity_check(model, chest, "Effusion", blank_once_randomised)
    assert check.passed
    assert all(step.spearman == 0.0 and step.ssim == 0.0 for step in check.steps)


def test_faithful_map_beats_random_on_deletion_and_insertion(patch_model, patch_film):
    patch_map = np.zeros_like(patch_film)
    patch_map[PATCH] = 1.0
    faithful = faithfulness(patch_model, patch_film, "Effusion", patch_map, steps=16)
    assert faithful.beats_random
    assert faithful.deletion.area < 0.5 * faithful.random_deletion.area
    unfaithful = faithfulness(patch_model, patch_film, "Effusion", 1.0 - patch_map, steps=16)
    assert not unfaithful.beats_random


def test_faithfulness_curves_run_from_the_film_to_black_and_from_blur_to_the_film(small_model, chest):
    saliency_map = attribute(small_model, chest, "Effusion", "saliency").normalized_map("Effusion")
    result = faithfulness(small_model, chest, "Effusion", saliency_map, steps=4)
    grey = grey_input(small_model, chest.pixels)
    with torch.inference_mode():
        logits = GreyInputNetwork(small_model)(torch.cat([grey, torch.zeros_like(grey)])).numpy()
    film, black = small_model.probabilities(logits)[:, PATHOLOGIES.index("Effusion")]
    for curve in (result.deletion, result.random_deletion):
        assert curve.probabilities[0] == pytest.approx(film, abs=1e-5)
        assert curve.probabilities[-1] == pytest.approx(black, abs=1e-5)
    assert result.insertion.probabilities[-1] == pytest.approx(film, abs=1e-5)
    np.testing.assert_array_equal(result.deletion.fractions, [0, 0.25, 0.5, 0.75, 1])
    assert 0.0 <= result.deletion.area <= 1.0 and 0.0 <= result.insertion.area <= 1.0



def test_faithfulness_controls_shared_by_two_maps_are_the_curves_each_would_draw(patch_model, patch_film):
    """evaluate --methods draws a film's random curves once for every method: they must be the same curves."""
    patch_map = np.zeros_like(patch_film)
    patch_map[PATCH] = 1.0
    shared = random_controls(patch_model, patch_film, "Effusion", steps=8, seed=3)
    for attribution_map in (patch_map, 1.0 - patch_map):
        alone = faithfulness(patch_model, patch_film, "Effusion", attribution_map, steps=8, seed=3)
        joined = faithfulness(patch_model, patch_film, "Effusion", attribution_map, steps=8, seed=3, controls=shared)
        np.testing.assert_allclose(joined.random_deletion.probabilities, alone.random_deletion.probabilities, atol=1e-6)
        np.testing.assert_allclose(joined.random_insertion.probabilities, alone.random_insertion.probabilities,
                                   atol=1e-6)
        np.testing.assert_allclose(joined.deletion.probabilities, alone.deletion.probabilities, atol=1e-6)
    other_seed = random_controls(patch_model, patch_film, "Effusion", steps=8, seed=4)
    assert not np.allclose(other_seed.deletion.probabilities, shared.deletion.probabilities)

def test_sanity_check_randomisation_changes_grad_cam_plus_plus_maps(model, chest):
    weights_before = {name: tensor.clone() for name, tensor in model.network.state_dict().items()}
    check = sanity_check(model, chest, "Effusion", "grad_cam_plus_plus")
    assert [step.block for step in check.steps] == ["fc", "layer4", "layer3", "layer2", "layer1", "bn1", "conv1"]
    assert check.passed and check.method == "grad_cam_plus_plus"
    assert check.steps[0].spearman < 0.9  # a new head alone already changes the map
    assert check.steps[-1].ssim < 0.5
    for name, tensor in model.network.state_dict().items():  # a copy was randomised, never the loaded model
        assert torch.equal(tensor, weights_before[name]), name


def test_sanity_check_decides_by_rank_not_by_the_ssim_of_smooth_maps(model, chest):
    """CAM's maps of the randomised network rank the film's pixels nothing like the original, yet SSIM at the input
    size still calls the two smooth maps alike: the rank correlation decides."""
    check = sanity_check(model, chest, "Effusion", "cam")
    last = check.steps[-1]
    assert abs(last.spearman) < 0.5 and last.ssim > 0.5
    assert check.passed


def test_sanity_check_flags_an_input_only_edge_detector(model, chest):
    """A map computed from the pixels alone survives any randomisation: the check must be able to fail."""

    def edge_detector(_model: XRayModel, pixels: np.ndarray, _label: str) -> np.ndarray:
        return sobel(pixels)

    check = sanity_check(model, chest, "Effusion", edge_detector)
    assert not check.passed
    assert all(step.spearman > 0.99 and step.ssim > 0.99 for step in check.steps)
    assert check.method == "edge_detector"


def test_method_comparison_on_boxes_reports_alignment_faithfulness_and_sanity(small_model, shared_data, tmp_path):
    source = shared_data / "nih" / "boxes.csv"
    rows = source.read_text().splitlines()
    boxes_csv = tmp_path / "boxes.csv"
    boxes_csv.write_text("\n".join(rows[:3]) + "\n")  # the header and two boxes
    comparison = compare_methods(small_model, ["grad_cam_plus_plus", "cam"], images=shared_data / "nih" / "images",
                                 boxes_csv=boxes_csv, curve_steps=2, sanity_films=1)
    assert set(comparison["methods"]) == {"grad_cam_plus_plus", "cam"} and comparison["unreadable"] == []
    chance = []  # a random map's maximum hits a box as often as the box covers the film
    for row in rows[1:3]:
        image, _finding, *corner = row.split(",")
        shape = read_xray(shared_data / "nih" / "images" / image).pixels.shape
        chance.append(Box(*map(float, corner)).area_fraction(shape))
    for report in comparison["methods"].values():
        figures = report["alignment"]["all"]
        assert figures["model"]["n"] == 2 and 0.0 <= figures["model"]["pointing_hit"] <= 1.0
        assert figures["random"]["pointing_hit"] == pytest.approx(np.mean(chance), abs=1e-3)
        faithful = report["faithfulness"]["all"]
        assert faithful["n"] == 2 and 0.0 <= faithful["deletion_auc"] <= 1.0
        assert len(report["sanity"]["checks"]) == 1 and len(report["sanity"]["checks"][0]["steps"]) == 7
    controls = [{key: report["faithfulness"]["all"][key] for key in ("random_deletion_auc", "random_insertion_auc")}
                for report in comparison["methods"].values()]
    assert controls[0] == controls[1]  # both methods' curves were measured against the same random order
    table = format_comparison(comparison)
    assert "Grad-CAM++" in table and "CAM" in table


def test_evaluate_methods_needs_boxes(tmp_path, capsys):
    arguments = ["evaluate", "--images", str(tmp_path), "--labels", str(tmp_path / "labels.csv"),
                 "--out", str(tmp_path / "report.json"), "--methods", "cam", "grad_cam"]
    assert build_parser().parse_args(arguments).methods == ["cam", "grad_cam"]
    with pytest.raises(SystemExit) as stopped:
        main(arguments)
    assert stopped.value.code == 2 and "--boxes" in capsys.readouterr().err


def test_method_agreement_of_two_maps_in_figures_and_words():
    ramp = np.tile(np.linspace(0.0, 1.0, 32), (32, 1))
    same = map_agreement(ramp, ramp)
    assert same.rank_correlation == pytest.approx(1.0) and same.region_overlap == 1.0
    assert "strongly agree" in same.in_words() and "overlap 100%" in same.in_words()
    opposite = map_agreement(ramp, 1.0 - ramp)
    assert opposite.rank_correlation == pytest.approx(-1.0) and opposite.region_overlap == 0.0
    assert "hardly agree" in opposite.in_words()
    assert map_agreement(ramp, np.zeros_like(ramp)).rank_correlation == 0.0  # a flat map ranks nothing


def test_method_progress_is_reported_before_each_batch_of_its_own_thread_only(small_model, chest):
    """The viewer's sessions share one network: a forward pass another thread makes while a method runs is
    neither counted nor reported (nor stopped) by that method's counter."""
    grey = grey_input(small_model, chest.pixels)
    reported: list[int] = []

    def other_reader() -> None:
        with torch.inference_mode():
            GreyInputNetwork(small_model)(grey)

    def progress(done: int) -> None:
        reported.append(done)
        if len(reported) == 1:
            reader = threading.Thread(target=other_reader)
            reader.start()
            reader.join()

    attribution = attribute(small_model, chest, "Effusion", "integrated_gradients", options={"steps": 3 * BATCH},
                            progress=progress)
    assert reported == [0, BATCH, 2 * BATCH]
    assert attribution.forward_passes == 3 * BATCH
    assert not small_model.network._forward_pre_hooks  # the counter's hook is removed


def test_method_job_runs_in_the_background_and_says_how_long_it_took(small_model, chest):
    job = start_method_job(small_model, chest, "Effusion", "integrated_gradients", options={"steps": 2 * BATCH})
    assert job.planned == 2 * BATCH
    assert job.wait(120), "the job did not finish"
    assert job.state is JobState.DONE and job.fraction == 1.0
    assert job.done == job.attribution.forward_passes == 2 * BATCH
    assert job.attribution.map("Effusion").shape == chest.pixels.shape
    assert job.in_words() == (f"Integrated Gradients for Effusion took {job.seconds:.1f} s: {2 * BATCH} images "
                              "through the network (Grad-CAM++ needs one for all 14 pathologies).")


def test_method_job_stop_ends_kernel_shap_early_with_a_clear_result(model, chest):
    """Stopped as the page stops it: from another thread, while the real checkpoint runs on the full-size film."""
    job = start_method_job(model, chest, "Effusion", "kernel_shap")
    assert job.planned == KERNEL_SHAP_SAMPLES
    deadline = time.monotonic() + 120
    while job.done == 0 and job.running and time.monotonic() < deadline:  # the first batch has run
        time.sleep(0.01)
    job.stop()
    assert "stopping" in job.in_words() or not job.running
    assert job.wait(120), "the job did not stop"
    assert job.state is JobState.STOPPED and job.attribution is None
    assert 0 < job.done <= 3 * BATCH < job.planned  # within a batch or two of the request, far from the end
    assert job.in_words() == (f"Kernel SHAP (superpixels) for Effusion was stopped after {job.done} of "
                              f"{KERNEL_SHAP_SAMPLES} images through the network ({job.seconds:.1f} s): no map.")
    assert not model.network._forward_pre_hooks
    assert attribute(model, chest, "Effusion", "grad_cam").forward_passes == 1  # the network is still usable


def test_method_agreement_of_a_real_map_with_itself_and_its_mirror_image(model, chest):
    heatmap = explain(model, chest).normalized_map("Effusion")
    same = map_agreement(heatmap, heatmap)
    assert same.rank_correlation == pytest.approx(1.0) and same.region_overlap == 1.0
    mirrored = map_agreement(heatmap, np.ascontiguousarray(heatmap[:, ::-1]))
    assert mirrored.rank_correlation < same.rank_correlation - 0.1
    assert mirrored.region_overlap < 0.9
    assert mirrored.in_words() != same.in_words() and "strongly agree" in same.in_words()


def test_method_figure_shows_the_radiograph_the_maps_and_a_research_only_caption(model, chest):
    shape = display_shape(chest.pixels.shape, 200)
    grey = resize_grey(chest.pixels, shape)
    explanation = explain(model, chest)
    grad_cams = attribute(model, chest, "Effusion", "grad_cam")
    maps = [("Grad-CAM++", explanation.normalized_map("Effusion", shape)),
            ("Grad-CAM", grad_cams.normalized_map("Effusion", shape))]
    caption = figure_caption(["Grad-CAM++", "Grad-CAM"], "Effusion", explanation.probability("Effusion"),
                             model.version)
    assert caption == (f"Grad-CAM++ vs Grad-CAM · Effusion (probability {explanation.probability('Effusion'):.2f})"
                       f" · model {model.version} · Research use only - not for diagnosis")
    figure = MethodFigure(grey, maps, caption, opacity=0.5).side_by_side()
    height, width = shape
    assert figure.dtype == np.uint8 and figure.shape[1] == 3 * width + 4 * GAP
    panels = [render_overlay(grey)] + [render_overlay(grey, heatmap=heatmap, opacity=0.5) for _, heatmap in maps]
    top = next(row for row in range(figure.shape[0] - height)
               if np.array_equal(figure[row:row + height, GAP:GAP + width], panels[0]))
    for number, panel in enumerate(panels):  # radiograph, then each map over it, in order
        left = GAP + number * (width + GAP)
        np.testing.assert_array_equal(figure[top:top + height, left:left + width], panel)
    assert (figure[top + height + GAP:] > 128).any()  # the caption is drawn under the panels
    narrow = MethodFigure(grey, maps[:1], caption).side_by_side()
    assert narrow.shape[0] > figure.shape[0]  # a figure too narrow for the caption wraps it onto more lines
    stored = Image.open(io.BytesIO(figure_png(figure, caption)))
    assert stored.text["Description"] == caption
    assert stored.text["Disclaimer"] == "Research use only - not for diagnosis"
    np.testing.assert_array_equal(np.asarray(stored.convert("RGB")), figure)


def test_method_cited_titles_name_each_reference_in_one_pair_of_brackets():
    for method in METHODS.values():
        cited = method.cited_title
        assert cited.count("(") == cited.count(")") == 1 and method.reference in cited, cited
    assert METHODS["occlusion"].cited_title == "Occlusion (superpixels; Zeiler & Fergus 2014)"
    assert METHODS["grad_cam"].cited_title == "Grad-CAM (Selvaraju et al. 2017)"


def _hooked_modules(network: nn.Module) -> list[str]:
    tables = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return [name for name, module in network.named_modules() if any(getattr(module, table) for table in tables)]


def test_guided_grad_cam_method_leaves_the_shared_network_and_other_sessions_saliency_unchanged(model, chest):
    """The viewer's sessions share one network: while guided Grad-CAM (which hooks every ReLU) runs for one
    session, another session's gradient saliency on that network is bit for bit what it is alone."""
    state = {name: tensor.clone() for name, tensor in model.network.state_dict().items()}
    alone = saliency(model, chest, "Effusion")

    def meanwhile(during: list) -> Callable[[int], None]:
        def probe(done: int) -> None:  # before guided Grad-CAM's second pass: guided backpropagation's
            if done == 1:
                during.append(_hooked_modules(model.network))
                reader = threading.Thread(target=lambda: during.append(saliency(model, chest, "Effusion")))
                reader.start()
                reader.join()
        return probe

    during: list = []
    guided = attribute(model, chest, "Effusion", "guided_grad_cam", progress=meanwhile(during))
    assert guided.forward_passes == 2 and during[0] == []  # the hooks were on a private copy, not the shared network
    np.testing.assert_array_equal(during[1], alone)
    assert _hooked_modules(model.network) == []
    assert all(torch.equal(tensor, state[name]) for name, tensor in model.network.state_dict().items())

    # the control: Captum's guided Grad-CAM run on the shared network itself changes the other session's
    # saliency while it runs (so the test above can fail), and gives the same map as on the private copy
    unguarded: list = []
    grey, index = grey_input(model, chest.pixels), model.labels.index("Effusion")
    with counted_forward_passes(model.network, meanwhile(unguarded)):
        shared = GuidedGradCam(GreyInputNetwork(model), model.network.layer4).attribute(
            grey, target=index, interpolate_mode="bilinear")[0].detach()
    assert any(name.endswith("relu") for name in unguarded[0])
    assert not np.allclose(unguarded[1], alone, atol=1e-3)
    np.testing.assert_allclose(guided.maps, shared.numpy(), rtol=1e-4, atol=1e-6 * float(shared.abs().max()))
    assert _hooked_modules(model.network) == []
