"""Losses on where the maps put their evidence: priors, boxes, absent labels, moved views; the masked BCE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xai_core.explanation import captured_output, explain, pooled_linear_cams
from xai_core.imaging import read_xray
from xai_core.labels import PATHOLOGIES
from xai_core.training.attention import (
    anatomical_priors,
    box_contrast_loss,
    box_loss,
    evidence_on_negatives,
    evidence_outside,
    map_equivariance,
    masked_bce,
    output_drift,
    thorax_prior,
)


def test_masked_loss_ignores_unknown_labels():
    logits = torch.tensor([[5.0, -5.0], [0.0, 0.0]])
    known = torch.tensor([[1.0, float("nan")], [float("nan"), float("nan")]])
    flipped = torch.tensor([[1.0, float("nan")], [float("nan"), float("nan")]])
    weight = torch.ones(2)
    assert masked_bce(logits, known, weight) == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(-5.0))))
    assert masked_bce(logits, flipped, weight) == masked_bce(logits, known, weight)


def test_output_drift_is_zero_with_no_pull_at_the_reference_and_grows_as_outputs_move_away():
    reference = torch.tensor([[-3.0, 0.0, 2.5]])
    same = reference.clone().requires_grad_(True)
    drift = output_drift(same, reference)
    drift.backward()
    assert drift.item() == pytest.approx(0.0, abs=1e-7)
    assert torch.allclose(same.grad, torch.zeros_like(same.grad), atol=1e-7)
    near, far = output_drift(reference + 0.5, reference), output_drift(reference + 2.0, reference)
    assert 0 < float(near) < float(far)
    moved = (reference + 2.0).requires_grad_(True)
    output_drift(moved, reference).backward()
    assert (moved.grad > 0).all()  # the pull is back towards the reference


def test_evidence_outside_the_thorax_is_measured_where_it_lies():
    head = torch.nn.Linear(2, 1)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, -1.0]]))
    inside = torch.from_numpy(np.pad(np.ones((3, 3), np.float32), 2))[None]  # 7 x 7, centre 3 x 3 inside
    features = torch.zeros(1, 2, 7, 7)
    features[0, 0, 0, 0] = 1.0  # positive evidence in a corner
    features[0, 1, 3, 3] = 5.0  # a negatively weighted channel does not count as evidence
    assert float(evidence_outside(pooled_linear_cams(features, head.weight), inside, torch.ones(1, 1)).detach()) == pytest.approx(1.0, abs=1e-5)
    features[0, 0, 3, 3] = 3.0
    assert float(evidence_outside(pooled_linear_cams(features, head.weight), inside, torch.ones(1, 1)).detach()) == pytest.approx(0.25, abs=1e-5)
    prior = thorax_prior(224)
    assert float(prior[50:170, 40:184].min()) > 0.85  # the lung fields and the heart (soft edges)
    edges = torch.cat([prior[0], prior[-1], prior[:, 0], prior[:, -1]])
    assert float(edges.max()) < 0.15


def test_evidence_on_negatives_counts_positive_evidence_where_the_label_is_known_absent():
    head = torch.nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[2.0, -1.0], [0.5, 1.0]]))
    features = torch.zeros(2, 2, 4, 4)
    features[0, 0, 1, 1] = 8.0  # image 0: channel 0 in one of 16 cells
    features[1, 1] = 1.0  # image 1: channel 1 everywhere
    # evidence per (image, label), the map's mean: [[2*8/16, 0.5*8/16], [0, 1]] (negative weights do not count)
    targets = torch.tensor([[0.0, float("nan")], [1.0, 0.0]])  # known negatives: (0, label 0) and (1, label 1)
    assert evidence_on_negatives(features, head.weight, targets).item() == pytest.approx((1.0 + 1.0) / 2)
    features.requires_grad_(True)
    evidence_on_negatives(features, head.weight, torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]])).backward()
    assert float(features.grad.abs().sum()) == 0.0  # no known negative, nothing to push


def test_map_equivariance_is_zero_for_maps_that_move_with_the_film_and_not_for_a_fixed_spot():
    head = torch.nn.Linear(3, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.5, -1.0], [0.0, 2.0, 1.0]]))
    generator = torch.Generator().manual_seed(0)
    content = torch.rand(4, 3, 8, 8, generator=generator)
    view, moved = content[:, :, :7, :7], content[:, :, 1:, 1:]  # the second view reads one cell right and down
    weights = torch.ones(4, 2)
    assert map_equivariance(view, moved, head.weight, (1, 1), weights).item() == pytest.approx(0.0, abs=1e-6)
    fixed = torch.zeros(4, 3, 7, 7)
    fixed[:, 0, 3, 2] = 50.0  # the same bright spot on every view, whatever the film shows
    assert map_equivariance(fixed + view, fixed + moved, head.weight, (1, 1), weights).item() > 0.2
    assert map_equivariance(fixed + view, fixed + moved, head.weight, (1, 1), torch.zeros(4, 2)).item() == 0.0


def test_per_label_priors_keep_lung_findings_off_the_mediastinum_and_cardiomegaly_on_the_heart():
    size = 100
    priors = anatomical_priors(size)
    assert priors.shape == (len(PATHOLOGIES), size, size)
    pneumonia, heart = priors[PATHOLOGIES.index("Pneumonia")], priors[PATHOLOGIES.index("Cardiomegaly")]
    right_lung, left_lung, mediastinum = pneumonia[40, 25], pneumonia[40, 75], pneumonia[40, 50]
    assert float(min(right_lung, left_lung)) > 0.9 and float(mediastinum) < 0.1
    assert float(heart[65, 55]) > 0.9 and float(heart[25, 20]) < 0.1
    assert torch.equal(priors[PATHOLOGIES.index("Hernia")], thorax_prior(size))
    # Each label's evidence is judged against its own mask.
    head = torch.nn.Linear(1, 2)
    with torch.no_grad():
        head.weight.fill_(1.0)
    features = torch.zeros(1, 1, size, size)
    features[0, 0, 65, 50] = 1.0  # evidence on the heart, behind the mediastinum
    inside = torch.stack([pneumonia, heart])[None]
    per_label = [float(evidence_outside(pooled_linear_cams(features, head.weight), inside, torch.eye(2)[[label]]).detach()) for label in (0, 1)]
    assert per_label[0] > 0.9 and per_label[1] < 0.1


def _one_channel_film(cell: tuple[int, int], grid: int = 10) -> torch.Tensor:
    features = torch.zeros(1, 2, grid, grid)
    features[0, 0, cell[0], cell[1]] = 4.0  # evidence for the label (positive weight) in one cell
    features[0, 1] = 1.0  # a channel the label weighs negatively: never evidence
    return features


def _box_inputs(grid: int = 10):
    head_weight = torch.tensor([[1.0, -1.0]])
    boxes = torch.tensor([[0.0, 0.0, 0.2, 0.2, 0.5, 0.5]])  # film 0, target 0, cells 2..4 in both directions
    masks = torch.zeros(1, grid, grid)
    masks[0, 2:5, 2:5] = 1.0
    return head_weight, boxes, masks


def test_box_loss_falls_as_the_evidence_moves_into_the_box():
    head_weight, boxes, masks = _box_inputs()
    losses = []
    for inside_share in (0.0, 0.25, 0.5, 1.0):
        features = _one_channel_film((8, 8)) * (1 - inside_share) + _one_channel_film((3, 3)) * inside_share
        features[0, 1] = 1.0
        losses.append(box_loss(pooled_linear_cams(features, head_weight), boxes, masks).item())
    assert losses[0] == pytest.approx(1.0, abs=1e-4) and losses[-1] == pytest.approx(0.0, abs=1e-4)
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))
    features = _one_channel_film((8, 8)).requires_grad_(True)
    features.data[0, 0, 3, 3] = 1.0
    box_loss(pooled_linear_cams(features, head_weight), boxes, masks).backward()
    assert float(features.grad[0, 0, 3, 3]) < 0 < float(features.grad[0, 0, 8, 8])  # more inside, less outside


def test_box_loss_gives_a_map_without_evidence_no_escape_and_ignores_films_without_boxes():
    head_weight, boxes, masks = _box_inputs()
    empty = torch.zeros(1, 2, 10, 10)
    assert box_loss(pooled_linear_cams(empty, head_weight), boxes, masks).item() == pytest.approx(1.0)
    generator = torch.Generator().manual_seed(0)
    unboxed = torch.rand(1, 2, 10, 10, generator=generator)
    boxed = _one_channel_film((3, 3))
    batch = torch.cat([boxed, unboxed]).requires_grad_(True)
    alone = box_loss(pooled_linear_cams(boxed, head_weight), boxes, masks).item()
    together = box_loss(pooled_linear_cams(batch, head_weight), boxes, masks)
    together.backward()
    assert together.item() == pytest.approx(alone)
    assert float(batch.grad[1].abs().sum()) == 0.0  # the film without boxes is not pushed anywhere
    nothing = box_loss(pooled_linear_cams(batch, head_weight), torch.empty(0, 6), torch.empty(0, 10, 10))
    assert nothing.item() == 0.0
    out_of_view = box_loss(pooled_linear_cams(boxed, head_weight), boxes, torch.zeros(1, 10, 10))
    assert out_of_view.item() == 0.0  # a box the augmentation moved out of the view is left out


def _two_boxed_films():
    """Film 0 boxed at cells 2..4, film 1 at cells 6..8 (both target 0)."""
    boxes = torch.tensor([[0.0, 0.0, 0.2, 0.2, 0.5, 0.5], [1.0, 0.0, 0.6, 0.6, 0.9, 0.9]])
    masks = torch.zeros(2, 10, 10)
    masks[0, 2:5, 2:5] = 1.0
    masks[1, 6:9, 6:9] = 1.0
    return torch.tensor([[1.0, -1.0]]), boxes, masks


def test_box_contrast_rewards_evidence_on_this_films_box_and_not_where_boxes_usually_are():
    head_weight, boxes, masks = _two_boxed_films()
    each_on_its_own = torch.cat([_one_channel_film((3, 3)), _one_channel_film((7, 7))])
    swapped = torch.cat([_one_channel_film((7, 7)), _one_channel_film((3, 3))])
    same_everywhere = torch.cat([_one_channel_film((3, 3)), _one_channel_film((3, 3))])
    scores = [box_contrast_loss(pooled_linear_cams(features, head_weight), boxes, masks).item()
              for features in (each_on_its_own, same_everywhere, swapped)]
    assert scores[0] == pytest.approx(-1.0, abs=1e-4) and scores[2] == pytest.approx(1.0, abs=1e-4)
    # The same map on every film (an average map) gains nothing, though it is inside one film's box and box_loss
    # gives it half marks.
    assert scores[1] == pytest.approx(0.0, abs=1e-4)
    assert box_loss(pooled_linear_cams(same_everywhere, head_weight), boxes, masks).item() == pytest.approx(0.5, abs=1e-4)
    features = same_everywhere.clone().requires_grad_(True)
    box_contrast_loss(pooled_linear_cams(features, head_weight), boxes, masks).backward()
    assert float(features.grad[1, 0, 7, 7]) < 0 < float(features.grad[1, 0, 3, 3])  # film 1: towards its own box


def test_box_contrast_needs_another_boxed_film_and_ignores_films_without_boxes():
    head_weight, boxes, masks = _box_inputs()
    alone = torch.cat([_one_channel_film((3, 3)), torch.rand(1, 2, 10, 10)]).requires_grad_(True)
    nothing = box_contrast_loss(pooled_linear_cams(alone, head_weight), boxes, masks)
    nothing.backward()
    assert nothing.item() == 0.0 and float(alone.grad.abs().sum()) == 0.0
    head_weight, boxes, masks = _two_boxed_films()
    batch = torch.cat([_one_channel_film((3, 3)), _one_channel_film((7, 7)), torch.rand(1, 2, 10, 10)])
    batch.requires_grad_(True)
    box_contrast_loss(pooled_linear_cams(batch, head_weight), boxes, masks).backward()
    assert float(batch.grad[2].abs().sum()) == 0.0


def test_the_trained_maps_are_the_maps_the_viewer_draws(model, chest_dicom):
    xray = read_xray(chest_dicom)
    shown = explain(model, xray)
    inputs = model.input_spec.prepare(xray.pixels, model.device)
    with torch.no_grad(), captured_output(model.network.layer4) as features:
        model.network(inputs)
    trained = pooled_linear_cams(features[0], model.network.fc.weight)[0].numpy()
    np.testing.assert_allclose(trained, shown.raw_cams, rtol=1e-4, atol=1e-6)
