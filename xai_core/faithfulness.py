"""Does a map reflect the model? Deletion / insertion curves and the model-randomisation sanity check.

Deletion and insertion (Petsiuk et al. 2018, RISE): rank the film's pixels by the
map, then black them out most important first (deletion: the label's probability
should fall fast, a low area under the curve is good), or reveal them on a blurred
copy of the film (insertion: it should rise fast, a high area is good). The same
curves for a random ranking are the control every map has to beat.

Cascading model randomisation (Adebayo et al. 2018, "Sanity checks for saliency
maps"): re-initialise the network's blocks from the head down, one more each step,
and compare each map with the original by Spearman rank correlation and SSIM. A map
that still looks the same after the whole network is random cannot be explaining the
model (an edge detector would pass every image through unchanged): it is flagged.

All of it runs at the model's input size, the film the network sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from skimage.metrics import structural_similarity
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from .imaging import XRay
from .labels import require_label
from .map_agreement import rank_correlation
from .methods import GreyInputNetwork, attribute, grey_input, method_named, private_network, resize_maps, seeded
from .model import XRayModel

CURVE_STEPS = 20
INSERTION_BLUR_SIGMA = 5.0  # RISE's blurred canvas for insertion, in input pixels
INSERTION_BLUR_KERNEL = 11
SIMILARITY_THRESHOLD = 0.5  # a rank correlation this high with the original after randomisation: not explaining

MapFunction = Callable[[XRayModel, np.ndarray, str], np.ndarray]  # (model, pixels, label) -> map (H, W) in [0, 1]


@dataclass(frozen=True)
class Curve:
    """The label's probability as pixels are deleted or inserted in the map's order."""

    fractions: np.ndarray  # (steps + 1,) share of the film's pixels changed, 0 to 1
    probabilities: np.ndarray  # (steps + 1,)

    @property
    def area(self) -> float:
        """Area under the curve (trapezoid rule over the fraction of pixels)."""
        return float(np.trapezoid(self.probabilities, self.fractions))


@dataclass(frozen=True)
class Faithfulness:
    """Deletion and insertion curves of one map, beside the same curves for a random ranking of the pixels."""

    label: str
    deletion: Curve
    insertion: Curve
    random_deletion: Curve
    random_insertion: Curve

    @property
    def beats_random(self) -> bool:
        """Deleting by the map lowers the probability faster, and inserting raises it faster, than at random."""
        return self.deletion.area < self.random_deletion.area and self.insertion.area > self.random_insertion.area


@dataclass(frozen=True)
class RandomControls:
    """Deletion and insertion curves of one film and label for a random ranking of its pixels."""

    deletion: Curve
    insertion: Curve


@dataclass(frozen=True)
class RandomisationStep:
    """The map after every block from the head down to `block` was re-initialised."""

    block: str
    spearman: float
    ssim: float


@dataclass(frozen=True)
class SanityCheck:
    """One method's map of one label through the cascading randomisation, a step per block re-initialised."""

    method: str
    label: str
    steps: tuple[RandomisationStep, ...]
    threshold: float = SIMILARITY_THRESHOLD

    @property
    def passed(self) -> bool:
        """The map of the fully randomised network no longer ranks the film's pixels as the original did.

        Spearman's rank correlation decides; SSIM is reported beside it but cannot decide. SSIM at the input
        size calls smooth or sparse maps alike whatever they show: the shipped model's own Pneumonia maps of
        six different NIH test films, compared pairwise, score a mean SSIM of 0.59 (CAM), 0.88 (Grad-CAM++)
        and 0.95 (Grad-CAM) while their rank correlations are 0.15, 0.41 and 0.01 (docs/methods.md).
        A strongly negative rank correlation passes: the map then points elsewhere, as it should.
        """
        return self.steps[-1].spearman < self.threshold


def faithfulness(
    model: XRayModel,
    xray: XRay | np.ndarray,
    label: str,
    attribution_map: np.ndarray,
    *,
    steps: int = CURVE_STEPS,
    seed: int = 0,
    controls: RandomControls | None = None,
) -> Faithfulness:
    """Deletion and insertion curves of a map (any resolution, larger = more important) and their random controls.

    The controls depend on the film, label, steps and seed alone: pass `random_controls`' result to score
    several maps of one film and label against the same random ranking for half the forward passes.
    """
    grey = _film(model, xray)
    index = model.labels.index(require_label(label))
    order = _ranking(model, attribution_map)
    if controls is None:
        controls = random_controls(model, xray, label, steps=steps, seed=seed)
    black, blurred = _canvases(grey)
    return Faithfulness(
        label=model.labels[index],
        deletion=_curve(model, index, start=grey, end=black, order=order, steps=steps),
        insertion=_curve(model, index, start=blurred, end=grey, order=order, steps=steps),
        random_deletion=controls.deletion,
        random_insertion=controls.insertion,
    )


def random_controls(
    model: XRayModel, xray: XRay | np.ndarray, label: str, *, steps: int = CURVE_STEPS, seed: int = 0
) -> RandomControls:
    """The control curves every map of this film and label is compared with: pixels in a seeded random order."""
    grey = _film(model, xray)
    index = model.labels.index(require_label(label))
    size = grey.shape[-1] * grey.shape[-2]
    order = torch.from_numpy(np.random.default_rng(seed).permutation(size)).to(grey.device)
    black, blurred = _canvases(grey)
    return RandomControls(
        deletion=_curve(model, index, start=grey, end=black, order=order, steps=steps),
        insertion=_curve(model, index, start=blurred, end=grey, order=order, steps=steps),
    )


def _canvases(grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What deletion ends on (a black film) and what insertion starts from (RISE's blurred film)."""
    return torch.zeros_like(grey), gaussian_blur(grey, [INSERTION_BLUR_KERNEL] * 2, [INSERTION_BLUR_SIGMA] * 2)


def _film(model: XRayModel, xray: XRay | np.ndarray) -> torch.Tensor:
    return grey_input(model, xray.pixels if isinstance(xray, XRay) else np.asarray(xray, dtype=np.float32))


def _ranking(model: XRayModel, attribution_map: np.ndarray) -> torch.Tensor:
    """Pixel indices of the input-size film, most important first (stable among ties)."""
    size = model.input_spec.size
    values = torch.as_tensor(np.asarray(attribution_map, dtype=np.float32), device=model.device)
    at_input = resize_maps(values[None], (size, size))[0]
    return torch.argsort(at_input.flatten(), descending=True, stable=True)


def _curve(
    model: XRayModel, index: int, *, start: torch.Tensor, end: torch.Tensor, order: torch.Tensor, steps: int
) -> Curve:
    """Move pixels from start to end in order, steps + 1 films from all start to all end, one batch."""
    counts = np.linspace(0, order.numel(), steps + 1).round().astype(int)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    thresholds = torch.as_tensor(counts, device=order.device)[:, None]
    changed = (rank[None, :] < thresholds).reshape(steps + 1, 1, *start.shape[-2:])
    films = torch.where(changed, end, start)  # (steps + 1, 1, S, S)
    network = GreyInputNetwork(model)
    with torch.inference_mode():
        logits = torch.cat([network(chunk) for chunk in films.split(8)]).float().cpu().numpy()
    return Curve(fractions=counts / order.numel(), probabilities=model.probabilities(logits)[:, index])


def sanity_check(
    model: XRayModel,
    xray: XRay | np.ndarray,
    label: str,
    method: str | MapFunction,
    *,
    seed: int = 0,
) -> SanityCheck:
    """Cascading randomisation from the head down; each map compared with the original's.

    method is a registered method's name or any function (model, pixels, label) -> map.
    """
    name = method if isinstance(method, str) else getattr(method, "__name__", "custom map")
    map_of = _registered_map(method) if isinstance(method, str) else method
    pixels = xray.pixels if isinstance(xray, XRay) else np.asarray(xray, dtype=np.float32)
    size = model.input_spec.size
    original = _comparable(map_of(model, pixels, label), size)
    network = private_network(model.network)  # randomised step by step; the shared network is never touched
    randomised = replace(model, network=network)
    steps = []
    for number, (block, module) in enumerate(_blocks_from_the_head(network)):
        _reinitialise(module, seed + number)
        changed = _comparable(map_of(randomised, pixels, label), size)
        similarity = {"spearman": rank_correlation(original, changed), "ssim": _ssim(original, changed)}
        steps.append(RandomisationStep(block, **similarity))
    return SanityCheck(method=name, label=require_label(label), steps=tuple(steps))


def _registered_map(method: str) -> MapFunction:
    method_named(method)  # an unknown name is refused before any work

    def map_of(model: XRayModel, pixels: np.ndarray, label: str) -> np.ndarray:
        size = model.input_spec.size
        return attribute(model, pixels, label, method).normalized_map(label, (size, size))

    map_of.__name__ = method
    return map_of


def _blocks_from_the_head(network: nn.Module) -> list[tuple[str, nn.Module]]:
    """The network's top-level blocks that hold weights, head first (resnet: fc, layer4, ..., bn1, conv1)."""
    blocks = [(name, child) for name, child in network.named_children() if any(True for _ in child.parameters())]
    return blocks[::-1]


def _reinitialise(module: nn.Module, seed: int) -> None:
    """Every layer's own initialisation (batch norm: statistics and affine reset too), reproducibly."""
    with seeded(seed):
        for layer in module.modules():
            reset = getattr(layer, "reset_parameters", None)
            if callable(reset):
                reset()


def _comparable(attribution_map: np.ndarray, size: int) -> np.ndarray:
    """A map at the input size in [0, 1], float64, for the similarity measures."""
    values = torch.as_tensor(np.asarray(attribution_map, dtype=np.float32))
    resized = resize_maps(values[None], (size, size))[0].double()
    shifted = resized - resized.min()
    peak = float(shifted.max())
    return (shifted / peak if peak > 0 else shifted).numpy()


def _ssim(first: np.ndarray, second: np.ndarray) -> float:
    """SSIM; 0 when either map is flat, as for the rank correlation: a flat map shows nothing, so it resembles
    no map (SSIM alone would call a blank map 'similar' to a sparse one, e.g. Grad-CAM after its head is re-drawn)."""
    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return 0.0
    return float(structural_similarity(first, second, data_range=1.0))
