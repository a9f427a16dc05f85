"""Explanation methods behind one call: (model, X-ray or pixels, label(s)) -> maps at the image's resolution + cost.

Every method sees what the network sees: the grey film at the model's input size
(1, 1, S, S) in [0, 1] (`grey_input`), the network wrapped to read it
(`GreyInputNetwork`), so baselines and occluders are films too (black = 0) and an
attribution is per grey pixel, never per copied colour channel.

Closed forms, one forward pass for every label (global average pooling + linear head,
A = layer4's activations K x h x w, W = the head's weights):

    CAM (Zhou et al. 2016)        cam_c      = sum_k W[c, k] A_k                  (signed)
    Grad-CAM (Selvaraju 2017)     dy_c/dA_k  = W[c, k] / (h w) at every position, so the mean
                                  gradient is W[c, k] / (h w) and grad_cam_c = relu(cam_c) / (h w)
    Grad-CAM++                    explanation.py's closed form, unchanged

Everything else is the library's: Captum's Integrated Gradients, Gradient SHAP,
feature ablation (occlusion) and Kernel SHAP on SLIC superpixels (scikit-image),
Guided Grad-CAM; explain.saliency for the gradient and SmoothGrad.

The viewer's sessions share one network, so no method may change it for another: a method
that hooks the network's modules while it runs (Captum's guided backpropagation on every ReLU,
its layer hooks for Grad-CAM on other heads) runs on a private copy of it (`private_network`),
made per call so that it always has the weights the caller's network has now.

Cost is measured, not estimated: the seconds the call took and the number of images
the network ran forward on (a forward pass hook counts them), so a reader can compare
methods in multiples of the one forward pass that explain() needs.
"""

from __future__ import annotations

import copy
import inspect
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import FeatureAblation, GradientShap, GuidedGradCam, IntegratedGradients, KernelShap, LayerGradCam
from skimage.segmentation import slic
from torch import nn

from .errors import XRayError
from .explanation import captured_output, explain, has_pooled_linear_head, normalized_cam, saliency
from .imaging import XRay
from .labels import require_label
from .model import XRayModel

IG_STEPS = 32
SMOOTHGRAD_SAMPLES = 16
GRADIENT_SHAP_SAMPLES = 16
GRADIENT_SHAP_NOISE = 0.1  # sd of the noise added to each sample, in grey units
KERNEL_SHAP_SAMPLES = 200
SUPERPIXELS = 64  # SLIC's target number of segments on the input-size film
SLIC_COMPACTNESS = 0.1  # grey images in [0, 1]: colour distance is small, so is the balance against space
BATCH = 4  # images per forward pass inside the Captum methods: bounds memory and how soon a run can stop, not results

MethodCompute = Callable[..., torch.Tensor]  # (model, pixels, label indices, **options) -> (L, h, w)
PassesPerLabel = Callable[[XRayModel, np.ndarray, dict[str, Any]], int]  # (model, pixels, settings) -> images


@dataclass(frozen=True)
class Method:
    """One explanation method: how to compute it and how to read it."""

    name: str
    title: str
    compute: MethodCompute
    magnitude: bool  # drawn as |map|: the sign (for or against the label) is in the raw map only
    one_pass: bool  # every label from the one forward pass explain() makes: switching is instant
    reference: str
    passes_per_label: PassesPerLabel = lambda _model, _pixels, _settings: 1
    hooks_network: Callable[[nn.Module], bool] = lambda _network: False  # then it runs on a private_network

    @property
    def cited_title(self) -> str:
        """'Grad-CAM (Selvaraju et al. 2017)'; a title already ending in brackets takes the reference inside them,
        'Occlusion (superpixels; Zeiler & Fergus 2014)'."""
        if self.title.endswith(")"):
            return f"{self.title[:-1]}; {self.reference})"
        return f"{self.title} ({self.reference})"


@dataclass(frozen=True, eq=False)
class Attribution:
    """What one method says about some labels of one image, and what it cost.

    `maps` stay at the method's own resolution (layer4's grid for the CAM family, the
    input size for the Captum methods, the image's for saliency) on its own scale;
    `map` and `normalized_map` resize them to the image on demand, as Explanation does.
    """

    method: str
    labels: tuple[str, ...]
    maps: np.ndarray  # (L, h, w) float32
    image_shape: tuple[int, int]  # (H, W) of the XRay
    magnitude: bool
    seconds: float
    forward_passes: int  # images the network ran forward on (one plain forward pass = 1)

    def map(self, label: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The raw map for one label resized (bilinear) to shape, the image's by default; signed where the method is."""
        raw = torch.from_numpy(self.maps[self._index(label)])
        return resize_maps(raw[None], shape or self.image_shape)[0].numpy()

    def normalized_map(self, label: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The map in [0, 1] as the page draws it, scaled as pytorch-grad-cam scales (min-max, resize, min-max);
        of its magnitude where the method's sign is not drawn."""
        raw = self.maps[self._index(label)]
        return normalized_cam(np.abs(raw) if self.magnitude else raw, shape or self.image_shape)

    def _index(self, label: str) -> int:
        name = require_label(label)
        if name not in self.labels:
            raise XRayError(f"This {self.method} explanation was computed for {', '.join(self.labels)}, not {name}.")
        return self.labels.index(name)


class GreyInputNetwork(nn.Module):
    """The network reading a grey film at its input size, (N, 1, S, S) in [0, 1], normalised as its input spec says."""

    def __init__(self, model: XRayModel) -> None:
        super().__init__()
        self.network = model.network
        self.input_spec = model.input_spec

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        return self.network(self.input_spec.normalise(grey[:, 0]))


def grey_input(model: XRayModel, pixels: np.ndarray) -> torch.Tensor:
    """An image's grey pixels (H, W) -> the film the network sees, (1, 1, S, S) in [0, 1]."""
    tensor = torch.tensor(np.asarray(pixels, dtype=np.float32), device=model.device)
    return model.input_spec.resize(tensor)[None, None]


def attribute(
    model: XRayModel,
    xray: XRay | np.ndarray,
    labels: str | Sequence[str],
    method: str = "grad_cam_plus_plus",
    *,
    options: Mapping[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Attribution:
    """Run one method for one or more labels.

    options go to the method's compute function (e.g. {"steps": 64} for integrated_gradients).
    progress, if given, is called with the number of images run forward so far before each
    batch the network runs in this thread (planned_forward_passes says how many there will be);
    an exception it raises stops the method there and propagates.
    """
    chosen = method_named(method)
    names = (labels,) if isinstance(labels, str) else tuple(labels)
    if not names:
        raise XRayError("Choose at least one pathology to explain.")
    indices = tuple(model.labels.index(require_label(name)) for name in names)
    pixels = xray.pixels if isinstance(xray, XRay) else np.asarray(xray, dtype=np.float32)
    start = time.perf_counter()
    if chosen.hooks_network(model.network):
        model = replace(model, network=private_network(model.network))
    with counted_forward_passes(model.network, progress) as passes:
        native = chosen.compute(model, pixels, indices, **dict(options or {}))
    return Attribution(
        method=chosen.name,
        labels=tuple(model.labels[index] for index in indices),
        maps=native.detach().float().cpu().numpy(),
        image_shape=(int(pixels.shape[0]), int(pixels.shape[1])),
        magnitude=chosen.magnitude,
        seconds=time.perf_counter() - start,
        forward_passes=passes[0],
    )


def planned_forward_passes(
    model: XRayModel,
    xray: XRay | np.ndarray,
    labels: str | Sequence[str],
    method: str,
    *,
    options: Mapping[str, Any] | None = None,
) -> int:
    """The images `attribute` will run forward with these arguments: the length of a progress bar."""
    chosen = method_named(method)
    if chosen.one_pass:
        return 1
    count = 1 if isinstance(labels, str) else len(labels)
    settings = {
        name: parameter.default
        for name, parameter in inspect.signature(chosen.compute).parameters.items()
        if parameter.kind is parameter.KEYWORD_ONLY
    }
    settings.update(options or {})
    pixels = xray.pixels if isinstance(xray, XRay) else np.asarray(xray, dtype=np.float32)
    return count * chosen.passes_per_label(model, pixels, settings)


def method_named(name: str) -> Method:
    if name not in METHODS:
        raise XRayError(f"'{name}' is not an explanation method this viewer offers: {', '.join(METHODS)}.")
    return METHODS[name]


def private_network(network: nn.Module) -> nn.Module:
    """A copy of the network with its own weights and buffers and none of its hooks, for a method that hooks modules.

    The hook tables are replaced by empty ones rather than copied: a hook another thread has on the shared
    network at this moment (its forward-pass counter, explain()'s capture of layer4) does not follow into
    the copy, and that thread adding or removing one meanwhile cannot disturb the copying.
    """
    empty_tables = {
        id(table): type(table)()
        for module in network.modules()
        for name, table in vars(module).items()
        if "hooks" in name and isinstance(table, dict)
    }
    return copy.deepcopy(network, empty_tables)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Torch's CPU and NumPy's global random numbers drawn from `seed` inside the block, and as they were after it:
    a sampling method is reproducible (Captum's Gradient SHAP draws from both) and leaves the caller's random state
    untouched."""
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)  # Captum draws from NumPy's global generator too
        try:
            yield
        finally:
            np.random.set_state(numpy_state)


@contextmanager
def counted_forward_passes(
    network: nn.Module, before_batch: Callable[[int], None] | None = None
) -> Iterator[list[int]]:
    """Count the images a network runs forward on in this thread while the block is open; the hook is always
    removed. The network may be shared (the viewer's sessions share one): other threads' passes are not counted.

    before_batch, if given, is called with the count so far before each batch; what it raises stops that batch.
    """
    count = [0]
    owner = threading.get_ident()

    def add(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if threading.get_ident() != owner:
            return
        if before_batch is not None:
            before_batch(count[0])
        count[0] += int(inputs[0].shape[0])

    handle = network.register_forward_pre_hook(add)
    try:
        yield count
    finally:
        handle.remove()


# --- closed forms: one forward pass, every label ---


def grad_cam_plus_plus(model: XRayModel, pixels: np.ndarray, indices: Sequence[int]) -> torch.Tensor:
    """explain()'s raw Grad-CAM++ maps (closed form for a pooled linear head, autograd otherwise)."""
    return torch.from_numpy(explain(model, pixels).raw_cams[list(indices)])


def class_activation_maps(model: XRayModel, pixels: np.ndarray, indices: Sequence[int]) -> torch.Tensor:
    """CAM: sum_k W[c, k] A_k, signed, at layer4's resolution. Needs a pooled linear head."""
    if not has_pooled_linear_head(model.network):
        raise XRayError(
            "CAM needs a network whose head is global average pooling and one linear layer; this one is not."
        )
    activations = _last_block_activations(model, pixels)
    weights = model.network.fc.weight.float()[list(indices)]
    return torch.einsum("lk,khw->lhw", weights, activations)


def grad_cam(model: XRayModel, pixels: np.ndarray, indices: Sequence[int]) -> torch.Tensor:
    """Grad-CAM at layer4's resolution: relu(CAM) / (h w) in closed form, Captum's LayerGradCam for other heads."""
    if has_pooled_linear_head(model.network):
        cams = class_activation_maps(model, pixels, indices)
        return cams.clamp(min=0) / (cams.shape[-2] * cams.shape[-1])
    grey_network, grey = GreyInputNetwork(model), grey_input(model, pixels)
    layer_grad_cam = LayerGradCam(grey_network, model.network.layer4)
    return torch.cat([layer_grad_cam.attribute(grey, target=index, relu_attributions=True)[0] for index in indices])


def _last_block_activations(model: XRayModel, pixels: np.ndarray) -> torch.Tensor:
    inputs = model.input_spec.prepare(pixels, model.device)
    with torch.inference_mode(), captured_output(model.network.layer4) as outputs:
        model.network(inputs)
    return outputs[0][0].float().clone()  # (K, h, w), out of inference mode


# --- gradients ---


def gradient_saliency(model: XRayModel, pixels: np.ndarray, indices: Sequence[int]) -> torch.Tensor:
    """explain.saliency for each label: |d logit / d pixel|, already at the image's resolution and in [0, 1]."""
    return torch.stack([torch.from_numpy(saliency(model, pixels, model.labels[index])) for index in indices])


def smoothgrad(
    model: XRayModel, pixels: np.ndarray, indices: Sequence[int], *, samples: int = SMOOTHGRAD_SAMPLES, seed: int = 0
) -> torch.Tensor:
    """explain.saliency averaged over noisy copies of the film."""
    return torch.stack([
        torch.from_numpy(saliency(model, pixels, model.labels[index], smoothgrad_samples=samples, seed=seed))
        for index in indices
    ])


def integrated_gradients(
    model: XRayModel, pixels: np.ndarray, indices: Sequence[int], *, steps: int = IG_STEPS
) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017) from a black film, per grey pixel at the input size.

    Completeness: a label's map sums to its logit on the film minus its logit on the black film.
    """
    grey = grey_input(model, pixels)
    ig = IntegratedGradients(GreyInputNetwork(model))
    return torch.cat([
        ig.attribute(grey, baselines=torch.zeros_like(grey), target=index, n_steps=steps, internal_batch_size=BATCH)[0]
        for index in indices
    ])


def gradient_shap(
    model: XRayModel,
    pixels: np.ndarray,
    indices: Sequence[int],
    *,
    samples: int = GRADIENT_SHAP_SAMPLES,
    noise: float = GRADIENT_SHAP_NOISE,
    seed: int = 0,
) -> torch.Tensor:
    """Gradient SHAP (Lundberg & Lee 2017, Captum's): expected gradients against a black and a mid-grey film."""
    grey = grey_input(model, pixels)
    baselines = torch.cat([torch.zeros_like(grey), torch.full_like(grey, 0.5)])
    explainer = GradientShap(GreyInputNetwork(model))
    chunks = [min(BATCH, samples - start) for start in range(0, samples, BATCH)]  # Captum runs n_samples at once
    with seeded(seed):
        return torch.cat([
            sum(chunk * explainer.attribute(grey, baselines=baselines, target=index, n_samples=chunk, stdevs=noise)[0]
                for chunk in chunks) / samples
            for index in indices
        ])


def guided_grad_cam(model: XRayModel, pixels: np.ndarray, indices: Sequence[int]) -> torch.Tensor:
    """Guided Grad-CAM (Selvaraju et al. 2017, Captum's): guided backpropagation times layer4's Grad-CAM.

    Captum hooks every ReLU (and layer4) of the network it is given while it runs: `attribute` gives it a
    private_network, never the one the viewer's sessions share.
    """
    grey = grey_input(model, pixels)
    explainer = GuidedGradCam(GreyInputNetwork(model), model.network.layer4)
    return torch.cat([explainer.attribute(grey, target=index, interpolate_mode="bilinear")[0] for index in indices])


# --- perturbation on superpixels ---


def superpixels(grey: torch.Tensor, segments: int = SUPERPIXELS) -> torch.Tensor:
    """SLIC superpixels of the input-size film, (1, 1, S, S) -> (1, 1, S, S) segment ids from 0."""
    film = grey[0, 0].detach().cpu().numpy().astype(np.float64)
    labels = slic(film, n_segments=segments, compactness=SLIC_COMPACTNESS, channel_axis=None, start_label=0)
    return torch.from_numpy(labels.astype(np.int64)).to(grey.device)[None, None]


def occlusion(
    model: XRayModel, pixels: np.ndarray, indices: Sequence[int], *, segments: int = SUPERPIXELS
) -> torch.Tensor:
    """Occlusion on superpixels (Captum's feature ablation): the logit lost when a segment is blacked out."""
    return _on_superpixels(FeatureAblation, model, pixels, indices, segments)


def kernel_shap(
    model: XRayModel,
    pixels: np.ndarray,
    indices: Sequence[int],
    *,
    segments: int = SUPERPIXELS,
    samples: int = KERNEL_SHAP_SAMPLES,
    seed: int = 0,
) -> torch.Tensor:
    """Kernel SHAP (Lundberg & Lee 2017, Captum's) on superpixels, a missing segment blacked out."""
    with seeded(seed):
        return _on_superpixels(KernelShap, model, pixels, indices, segments, n_samples=samples)


def _on_superpixels(
    explainer_type: type[FeatureAblation | KernelShap],
    model: XRayModel,
    pixels: np.ndarray,
    indices: Sequence[int],
    segments: int,
    **settings: int,
) -> torch.Tensor:
    """A Captum perturbation method whose features are the film's SLIC superpixels, a missing one blacked out."""
    grey = grey_input(model, pixels)
    mask = superpixels(grey, segments)
    explainer = explainer_type(GreyInputNetwork(model))
    return torch.cat([
        explainer.attribute(
            grey, baselines=0.0, target=index, feature_mask=mask, perturbations_per_eval=BATCH, **settings
        )[0]
        for index in indices
    ])


def resize_maps(maps: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(L, h, w) -> (L, H, W), bilinear with half-pixel centres (as explanation.py resizes), antialiased when shrinking."""
    if tuple(maps.shape[-2:]) == tuple(shape):
        return maps
    shrinking = shape[0] < maps.shape[-2] or shape[1] < maps.shape[-1]
    resized = F.interpolate(maps[:, None], size=tuple(shape), mode="bilinear", align_corners=False, antialias=shrinking)
    return resized[:, 0]


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method("grad_cam_plus_plus", "Grad-CAM++", grad_cam_plus_plus, magnitude=False, one_pass=True,
               reference="Chattopadhay et al. 2018"),
        Method("grad_cam", "Grad-CAM", grad_cam, magnitude=False, one_pass=True, reference="Selvaraju et al. 2017",
               hooks_network=lambda network: not has_pooled_linear_head(network)),  # Captum's LayerGradCam then
        Method("cam", "CAM", class_activation_maps, magnitude=False, one_pass=True, reference="Zhou et al. 2016"),
        Method("saliency", "Gradient saliency", gradient_saliency, magnitude=False, one_pass=False,
               reference="Simonyan et al. 2014"),
        Method("smoothgrad", "SmoothGrad", smoothgrad, magnitude=False, one_pass=False,
               reference="Smilkov et al. 2017", passes_per_label=lambda _model, _pixels, settings: settings["samples"]),
        Method("integrated_gradients", "Integrated Gradients", integrated_gradients, magnitude=True, one_pass=False,
               reference="Sundararajan et al. 2017", passes_per_label=lambda _model, _pixels, settings: settings["steps"]),
        Method("gradient_shap", "Gradient SHAP", gradient_shap, magnitude=True, one_pass=False,
               reference="Lundberg & Lee 2017", passes_per_label=lambda _model, _pixels, settings: settings["samples"]),
        Method("occlusion", "Occlusion (superpixels)", occlusion, magnitude=True, one_pass=False,
               reference="Zeiler & Fergus 2014", passes_per_label=lambda model, pixels, settings: 2 + int(  # the film, then each segment (ids from 0)
                   superpixels(grey_input(model, pixels), settings["segments"]).max())),
        Method("kernel_shap", "Kernel SHAP (superpixels)", kernel_shap, magnitude=True, one_pass=False,
               reference="Lundberg & Lee 2017", passes_per_label=lambda _model, _pixels, settings: settings["samples"]),
        Method("guided_grad_cam", "Guided Grad-CAM", guided_grad_cam, magnitude=True, one_pass=False,
               reference="Selvaraju et al. 2017", passes_per_label=lambda _model, _pixels, _settings: 2,
               hooks_network=lambda _network: True),  # guided backpropagation hooks every ReLU
    )
}
