"""Probabilities and Grad-CAM++ maps for all 14 labels from one forward pass; saliency on demand.

For a head that is global average pooling followed by a linear layer, the
gradient of label c's logit with respect to the last block's activations A
(K x h x w) is the same at every position: dy_c/dA_k = W[c, k] / (h * w).
Grad-CAM++'s weights (Chattopadhay et al. 2018, eq. 19, with pytorch-grad-cam's
conventions) then follow in closed form from A and W:

    g = W[c, k] / (h w),  S_k = sum_ij A_k,
    alpha_k = g^2 / (2 g^2 + S_k g^3 + eps)   (0 where g == 0),  eps = 1e-6
    w_ck = sum_ij relu(g) alpha_k = h w relu(g) alpha_k
    cam_c = relu(sum_k w_ck A_k)

so every map costs an einsum after the one forward pass, no backward pass at
all. The eps is not negligible at gradients of order W/(h w), so it is kept
exactly as the reference library has it. Other heads take the generic path:
one backward pass per label through autograd, the same formula on the real
gradients.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .imaging import XRay
from .labels import require_label
from .model import XRayModel
from .ood import Assessment, assess

GRADCAM_PLUS_PLUS_EPS = 1e-6  # pytorch-grad-cam's eps in the alpha denominator
SCALE_EPS = 1e-7  # pytorch-grad-cam's eps in min-max scaling


@dataclass(frozen=True, eq=False)
class Explanation:
    """What the model predicts for one image and where it looked, for every label.

    `raw_cams` holds the maps at the feature resolution (h x w, e.g. 7 x 7) on
    their raw scale, so maps of different labels and images can be compared;
    `raw_map` and `normalized_map` resize them to the image on demand (a
    2000 x 2000 map per label would cost 16 MB each).
    """

    labels: tuple[str, ...]
    probabilities: np.ndarray  # (14,)
    logits: np.ndarray  # (14,)
    raw_cams: np.ndarray  # (14, h, w), non-negative
    image_shape: tuple[int, int]  # (H, W) of the XRay
    model_version: str
    ood: Assessment | None = None  # is it a frontal chest film like the training films (ood.py); None: no statistics

    def probability(self, label: str) -> float:
        return float(self.probabilities[self.labels.index(require_label(label))])

    def strength(self, label: str) -> float:
        """The raw map's maximum: how strongly the block's features speak for this label anywhere."""
        return float(self.raw_cams[self.labels.index(require_label(label))].max())

    def raw_map(self, label: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The unnormalised map resized (bilinear) to shape, the image's by default."""
        cam = torch.from_numpy(self.raw_cams[self.labels.index(require_label(label))])
        return _resize(cam, shape or self.image_shape).numpy()

    def normalized_map(self, label: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The map in [0, 1] exactly as pytorch-grad-cam scales it: min-max, resize, min-max again."""
        return normalized_cam(self.raw_cams[self.labels.index(require_label(label))], shape or self.image_shape)

    def maps(self, *, normalized: bool = True, shape: tuple[int, int] | None = None) -> np.ndarray:
        """All 14 maps at once, (14, H, W)."""
        method = self.normalized_map if normalized else self.raw_map
        return np.stack([method(label, shape) for label in self.labels])


@contextmanager
def captured_output(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record a module's forward output, in this thread only, while the block is open; the hook is always removed.

    The viewer's sessions share one network (serving.py): another session's forward pass through the module while
    the block is open must not be read as this one's.
    """
    outputs: list[torch.Tensor] = []
    owner = threading.get_ident()

    def record(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        if threading.get_ident() == owner:
            outputs.append(output)

    handle = module.register_forward_hook(record)
    try:
        yield outputs
    finally:
        handle.remove()


def explain(model: XRayModel, xray: XRay | np.ndarray) -> Explanation:
    """One forward pass -> 14 probabilities and 14 raw Grad-CAM++ maps."""
    pixels = xray.pixels if isinstance(xray, XRay) else np.asarray(xray, dtype=np.float32)
    inputs = model.input_spec.prepare(pixels, model.device)
    if has_pooled_linear_head(model.network):
        logits, cams = _closed_form_cams(model.network, inputs)
    else:
        logits, cams = _autograd_cams(model.network, inputs)
    section = model.card.out_of_distribution
    return Explanation(
        labels=model.labels,
        probabilities=model.probabilities(logits.cpu().numpy()),
        logits=logits.cpu().numpy().astype(np.float32),
        raw_cams=cams.cpu().numpy().astype(np.float32),
        image_shape=(int(pixels.shape[0]), int(pixels.shape[1])),
        model_version=model.version,
        ood=None if section is None else assess(pixels, section),
    )


def grad_cam_plus_plus_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Eq. 19 of Grad-CAM++ as pytorch-grad-cam computes it. (L, K, h, w) x 2 -> (L, K)."""
    squared = gradients**2
    sums = activations.sum(dim=(-2, -1), keepdim=True)
    alpha = squared / (2 * squared + sums * squared * gradients + GRADCAM_PLUS_PLUS_EPS)
    alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
    return (gradients.clamp(min=0) * alpha).sum(dim=(-2, -1))


def pooled_linear_cams(activations: torch.Tensor, head_weight: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ in closed form for a global-average-pooled linear head: (N, K, h, w), (L, K) -> (N, L, h, w).

    Differentiable, so training can put a loss on exactly the maps the viewer draws.
    """
    activations = activations.float()
    h, w = activations.shape[-2:]
    gradients = (head_weight.float() / (h * w))[None, :, :, None, None]  # (1, L, K, 1, 1): same at every position
    # Broadcast over the positions instead of expanded to (L, K, h, w): the sum over
    # h * w equal terms is h * w times one of them.
    weights = grad_cam_plus_plus_weights(activations.unsqueeze(1), gradients) * (h * w)  # (N, L, K)
    return torch.einsum("nlk,nkhw->nlhw", weights, activations).clamp(min=0)


def _closed_form_cams(network: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode(), captured_output(network.layer4) as outputs:
        logits = network(inputs)[0].float()
        activations = outputs[0].float()  # (1, K, h, w)
        cams = pooled_linear_cams(activations, network.fc.weight)[0]
    return logits, cams


def _autograd_cams(network: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Any differentiable head: the real gradient of each logit, one backward pass per label."""
    # The input asks for gradients so that the block's output has a graph even when
    # the network's own parameters are frozen (as load_model leaves them).
    inputs = inputs.detach().requires_grad_(True)
    with torch.enable_grad(), captured_output(network.layer4) as outputs:
        logits = network(inputs)[0]
        activations = outputs[0]
        gradients = torch.stack(
            [torch.autograd.grad(logits[index], activations, retain_graph=True)[0][0] for index in range(len(logits))]
        )
    activations = activations[0].detach().float()
    weights = grad_cam_plus_plus_weights(activations.unsqueeze(0), gradients.float())
    cams = torch.einsum("lk,khw->lhw", weights, activations).clamp_(min=0)
    return logits.detach().float(), cams


def has_pooled_linear_head(network: nn.Module) -> bool:
    pool = getattr(network, "avgpool", None)
    return (
        isinstance(getattr(network, "fc", None), nn.Linear)
        and isinstance(pool, nn.AdaptiveAvgPool2d)
        and pool.output_size in (1, (1, 1))
    )


def saliency(
    model: XRayModel,
    xray: XRay | np.ndarray,
    label: str,
    *,
    smoothgrad_samples: int = 0,
    noise_level: float = 0.15,
    seed: int = 0,
) -> np.ndarray:
    """Gradient saliency for one label at the image's resolution, scaled to [0, 1].

    Vanilla gradient (Simonyan et al. 2014): |d logit / d input pixel|. With
    smoothgrad_samples > 0, SmoothGrad (Smilkov et al. 2017): the mean absolute
    gradient over noisy copies, noise sd = noise_level x the input's range.
    """
    index = model.labels.index(require_label(label))
    pixels = xray.pixels if isinstance(xray, XRay) else np.asarray(xray, dtype=np.float32)
    inputs = model.input_spec.prepare(pixels, model.device)
    if smoothgrad_samples > 0:
        generator = torch.Generator(device=inputs.device).manual_seed(seed)
        sd = noise_level * float(inputs.max() - inputs.min())
        noise = torch.randn((smoothgrad_samples, *inputs.shape[1:]), generator=generator, device=inputs.device) * sd
        batch = inputs + noise
    else:
        batch = inputs
    total = torch.zeros(inputs.shape[-2:], device=inputs.device)
    for chunk in batch.split(8):
        chunk = chunk.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
        with torch.enable_grad():
            logits = model.network(chunk)
            (gradient,) = torch.autograd.grad(logits[:, index].sum(), chunk)
        # The three channels are copies of the grey image: their sum is the gradient per grey pixel.
        total += gradient.sum(dim=1).abs().sum(dim=0)
    grey_gradient = total / batch.shape[0]
    return _min_max(_resize(grey_gradient.float().cpu(), pixels.shape[:2])).numpy()


def normalized_cam(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A (h, w) map at the feature grid to shape in [0, 1] as pytorch-grad-cam scales it: min-max, resize, min-max."""
    return _min_max(_resize(_min_max(torch.from_numpy(np.asarray(cam, dtype=np.float32))), shape)).numpy()


def _resize(image: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear with half-pixel centres, as cv2.resize(INTER_LINEAR) does for pytorch-grad-cam."""
    if tuple(image.shape[-2:]) == tuple(shape):
        return image.float()
    return F.interpolate(image[None, None].float(), size=tuple(shape), mode="bilinear", align_corners=False)[0, 0]


def _min_max(image: torch.Tensor) -> torch.Tensor:
    shifted = image - image.min()
    return shifted / (SCALE_EPS + shifted.max())
