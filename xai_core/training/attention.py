"""Losses on where the maps put their evidence: anatomical priors, radiologists' boxes, absent labels, moved views.

The location losses act on the Grad-CAM++ maps in closed form (explain.pooled_linear_cams) computed
from the last block's features inside the training graph: what is trained is exactly what the viewer
draws. Every loss here is a fraction or a mean, so its weight in the total loss reads the same
whatever the batch holds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..labels import PATHOLOGIES
from .augment import warp


def _band(x: torch.Tensor, low: float, high: float, softness: float = 0.03) -> torch.Tensor:
    """Soft indicator of low < x < high, in [0, 1]."""
    return torch.sigmoid((x - low) / softness) * torch.sigmoid((high - x) / softness)


def thorax_prior(size: int) -> torch.Tensor:
    """(size, size) soft mask of where the thorax lies on an adult frontal film, 1 inside.

    A generous rounded rectangle read off the mean of NIH training images (lungs,
    mediastinum, heart and diaphragm; not the outer tenth on each side, the neck
    strip or the lower abdomen). It is a prior on position only, never derived
    from the radiologists' boxes, and is warped with each image's augmentation.
    """
    coords = (torch.arange(size) + 0.5) / size
    return _band(coords, 0.06, 0.84).unsqueeze(1) * _band(coords, 0.10, 0.90).unsqueeze(0)


# Labels whose evidence belongs to the heart, and to the thorax as a whole (a hiatal
# hernia lies behind the heart, above the diaphragm); every other label is a finding
# of the lungs or the pleura.
_HEART_LABELS = {"Cardiomegaly"}
_THORAX_LABELS = {"Hernia"}


def anatomical_priors(size: int) -> torch.Tensor:
    """(14, size, size) soft masks, one per label in PATHOLOGIES order, of where its evidence may lie.

    Lung and pleural findings: the thorax prior without the central mediastinal
    strip, so that a model cannot explain pneumonia by the mediastinum and hila
    alone (the thorax prior let the maps collapse there). Cardiomegaly: the
    cardiac silhouette's region, central and left of the patient (right of the
    image), lower half. Hernia: the whole thorax. Positions read off adult
    frontal anatomy, never from the radiologists' boxes; warped with each
    image's augmentation like the thorax prior.
    """
    coords = (torch.arange(size) + 0.5) / size
    thorax = thorax_prior(size)
    lungs = thorax * (1 - _band(coords, 0.43, 0.57, softness=0.015)).unsqueeze(0)
    heart = _band(coords, 0.42, 0.88).unsqueeze(1) * _band(coords, 0.33, 0.75).unsqueeze(0)
    return torch.stack([heart if label in _HEART_LABELS else thorax if label in _THORAX_LABELS else lungs
                        for label in PATHOLOGIES])


def positive_evidence(features: torch.Tensor, head_weight: torch.Tensor) -> torch.Tensor:
    """(N, K, h, w) block output -> (N, L, h, w) maps sum_k relu(W[c, k]) A_k, in logit units x h w: the part of
    the pooled linear head that can raise each label's logit."""
    return torch.einsum("nkhw,ck->nchw", features.float(), head_weight.float().clamp(min=0))


def evidence_weights(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, 14): each label counts by the model's own probability (the evidence it uses), fully where it is a
    known positive."""
    return torch.maximum(torch.sigmoid(logits.detach().float()), (targets == 1).float())


def evidence_outside(cams: torch.Tensor, inside: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean fraction of each label's map evidence that lies outside its mask.

    cams (N, L, h, w) non-negative maps; inside in [0, 1]: (N, h, w), one mask for
    all labels, or (N, L, h, w), one per label; weights (N, L).
    """
    if inside.dim() == 3:
        inside = inside.unsqueeze(1)
    outside = (cams * (1 - inside)).sum((2, 3)) / (cams.sum((2, 3)) + 1e-6)
    return (outside * weights).sum() / weights.sum().clamp(min=1e-6)


def prior_loss(cams: torch.Tensor, theta: torch.Tensor, prior: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Evidence outside the anatomical prior, the prior warped like each film.

    cams (N, 14, h, w); prior (1 or 14, S, S); weights (N, 14) (zero for films the prior does not fit).
    """
    regions, size = prior.shape[0], prior.shape[-1]
    inside = warp(prior.unsqueeze(0).expand(len(theta), -1, -1, -1).reshape(-1, size, size),
                  theta.repeat_interleave(regions, dim=0), size)
    inside = F.adaptive_avg_pool2d(inside.unsqueeze(1), cams.shape[-2:]).reshape(len(theta), regions, *cams.shape[-2:])
    return evidence_outside(cams, inside, weights)


def box_loss(cams: torch.Tensor, boxes: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """1 - the share of a boxed target's map evidence inside its boxes, averaged over (film, target) pairs.

    cams (N, T, h, w) non-negative maps; boxes (P, 6) with film position and target index in columns 0
    and 1 (bank.ImageBank.boxes_of); masks (P, h, w) each box's cover of the map's cells in the film's
    augmented view (augment.box_masks). A film's boxes for one target count as one region. Evidence
    moved inside lowers the loss, evidence outside raises it, and a map without evidence scores 1, so
    a model cannot escape the loss by drawing nothing. Boxes moved out of view by the augmentation are
    left out; films without boxes add nothing.
    """
    losses = [1 - _share_inside(cams[film, target], region) for film, target, region in _boxed_regions(boxes, masks)]
    return torch.stack(losses).mean() if losses else cams.sum() * 0.0


def box_contrast_loss(cams: torch.Tensor, boxes: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The share of a boxed target's map evidence inside the OTHER films' boxes of the batch minus the share
    inside its own film's, averaged over (film, target) pairs; in [-1, 1], lower is better.

    box_loss alone is lowered as much by evidence where boxes usually are (the lower lung fields, say) as by
    evidence on this film's finding, and runs that used it taught the model's average map as fast as its
    maps (docs/model.md). Here evidence gains only where it is in this film's boxes and not in the others':
    a map that is the same on every film scores 0 on average, whatever its shape. Other films' boxes are
    taken where they lie in their own views (chest films are framed alike). Inputs as box_loss; pairs
    without another boxed film in the batch add nothing.
    """
    regions = _boxed_regions(boxes, masks)
    losses = []
    for film, target, region in regions:
        others = [other for other_film, _target, other in regions if other_film != film]
        if not others:
            continue
        evidence = cams[film, target]
        elsewhere = torch.stack([_share_inside(evidence, other) for other in others]).mean()
        losses.append(elsewhere - _share_inside(evidence, region))
    return torch.stack(losses).mean() if losses else cams.sum() * 0.0


def _boxed_regions(boxes: torch.Tensor, masks: torch.Tensor) -> list[tuple[int, int, torch.Tensor]]:
    """(film, target, region) for each film's boxes of one target, joined; boxes moved out of view left out."""
    regions = []
    keys = boxes[:, :2].long()
    for film, target in torch.unique(keys, dim=0).tolist():
        chosen = (keys[:, 0] == film) & (keys[:, 1] == target)
        region = masks[chosen.to(masks.device)].amax(0)
        if float(region.sum()) >= 1e-3:
            regions.append((film, target, region))
    return regions


def _share_inside(evidence: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    return (evidence * region).sum() / (evidence.sum() + 1e-6)


def evidence_on_negatives(features: torch.Tensor, head_weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean positive evidence, in logit units, that each label's map holds on images known not to have it.

    Behind a global average pool a model can keep the same bright spot on every
    film and cancel it with negatively weighted channels and the bias: the logit
    is right, the map says nothing about this image. Asking the positive evidence
    to vanish where the label is known absent leaves the channels that speak for
    a label silent on films without it.
    features (N, K, h, w) after the block's ReLU; targets (N, 14), NaN unknown.
    """
    evidence = positive_evidence(features, head_weight).mean((2, 3))
    negative = (targets == 0).float()
    return (evidence * negative).sum() / negative.sum().clamp(min=1)


# The second view's move for the equivariance loss: one cell of the map in any of the eight directions.
SHIFTS = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx, dy) != (0, 0)]


def shifted_by_cells(theta: torch.Tensor, cells: tuple[int, int], grid: int) -> torch.Tensor:
    """The warp theta, read `cells` (dx, dy) feature-grid cells further on: view(theta') at cell (x, y) is
    view(theta) at cell (x + dx, y + dy), so the film's content moves by whole cells of the map."""
    offset = torch.tensor(cells, dtype=theta.dtype) * 2.0 / grid  # one cell in affine_grid's [-1, 1] coordinates
    linear = theta[:, :, :2]
    return torch.cat([linear, theta[:, :, 2:] + linear @ offset.view(1, 2, 1)], dim=2)


def map_equivariance(features: torch.Tensor, shifted: torch.Tensor, head_weight: torch.Tensor,
                     cells: tuple[int, int], weights: torch.Tensor) -> torch.Tensor:
    """How far each label's map fails to move with the film, in [0, 1] (weighted mean over images and labels).

    features and shifted (N, K, h, w): the last block on a view and on the same view read `cells` further
    (shifted_by_cells). A map that follows the film's content is the same on the cells both views see,
    one cell pattern moved; a map that sits on a fixed position of the input is not. The evidence maps
    (positive_evidence) are scaled to unit sum over the shared cells and compared by total variation
    distance. weights (N, 14).
    """
    dx, dy = cells
    h, w = features.shape[-2:]
    rows, cols = slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0))
    rows_shifted, cols_shifted = slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0))
    first = positive_evidence(features[:, :, rows, cols], head_weight)
    second = positive_evidence(shifted[:, :, rows_shifted, cols_shifted], head_weight)
    first = first / (first.sum((2, 3), keepdim=True) + 1e-6)
    second = second / (second.sum((2, 3), keepdim=True) + 1e-6)
    distance = 0.5 * (first - second).abs().sum((2, 3))
    return (distance * weights).sum() / weights.sum().clamp(min=1e-6)


def positive_weights(labels: torch.Tensor, cap: float = 10.0) -> torch.Tensor:
    """neg/pos per label over the known labels, capped: the rare findings count more."""
    known = ~torch.isnan(labels)
    positives = torch.nansum(labels, 0)
    negatives = known.sum(0) - positives
    return (negatives / positives.clamp(min=1)).clamp(1.0, cap)


def output_drift(logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """Mean binary KL divergence of the outputs from a reference model's on the same inputs (zero when equal).

    Keeps what a fine-tune does not mean to change (the 14 probabilities of the starting checkpoint) while
    other losses move where the maps put their evidence: a pooled logit can stay the same while its map moves.
    """
    p, log_p, log_q = (torch.sigmoid(reference_logits.float()), F.logsigmoid(reference_logits.float()),
                       F.logsigmoid(logits.float()))
    log_not_p, log_not_q = F.logsigmoid(-reference_logits.float()), F.logsigmoid(-logits.float())
    return (p * (log_p - log_q) + (1 - p) * (log_not_p - log_not_q)).mean()


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over the known labels only (NaN targets contribute nothing)."""
    known = ~torch.isnan(targets)
    losses = F.binary_cross_entropy_with_logits(
        logits.float(), torch.nan_to_num(targets, nan=0.0), pos_weight=pos_weight, reduction="none"
    )
    return (losses * known).sum() / known.sum().clamp(min=1)
