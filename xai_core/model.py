"""The classifier: a torchvision ResNet-50 with a 14-output head, its checkpoint and model card.

A checkpoint is two files side by side in a folder:
  <name>.safetensors  the weights (float16 or bfloat16 on disk, float32 in memory)
  <name>.json         the model card: architecture, label order, input size and
                      normalisation, training data and command, metrics, per-label
                      operating points and verdicts, the weights' sha256
Nothing is ever unpickled: safetensors holds tensors only.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn
from torchvision.models import resnet50

from . import calibration, ood
from .card import CARD_FORMAT, OUTPUT_STRIDES, ModelCard, read_card, write_card
from .errors import XRayError
from .labels import PATHOLOGIES
from .preprocessing import InputSpec

ARCHITECTURE = "torchvision resnet50, fc = Linear(2048, 14), weights=None"
TARGET_LAYER = "layer4"  # the last convolutional block: Grad-CAM++ reads its output
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_CARD = WEIGHTS_DIR / "resnet50_cxr14.json"
DEVICE_ENV = "XAI_DEVICE"
CARD_ENV = "XAI_MODEL_CARD"  # another checkpoint's card, e.g. a hospital's own fine-tuned model
_SAVED_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class XRayModel:
    """A loaded classifier: the network in eval mode, its model card and its device."""

    network: nn.Module
    card: ModelCard
    device: torch.device
    input_spec: InputSpec

    @property
    def labels(self) -> tuple[str, ...]:
        return self.card.labels

    @property
    def version(self) -> str:
        return self.card.model_version

    def thresholds(self) -> dict[str, float]:
        """Per-label operating thresholds from the card (0.5 where it gives none), on the probabilities' scale.

        The card keeps them as chosen on validation, on the raw sigmoid; with a
        calibration they are mapped through it, so each makes the same decisions.
        """
        return {label: calibration.threshold(self.card.calibration, label, self.card.threshold(label))
                for label in self.labels}

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """(..., 14) logits -> probabilities: the card's calibration (calibration.py) where it has one, else sigmoid."""
        return calibration.probabilities(self.card.calibration, logits)

    def test_figures(self, label: str) -> dict[str, Any]:
        """The card's NIH test figures for one label (card.ModelCard.test_figures); {} if none."""
        return self.card.test_figures(label)



def build_network(num_labels: int = len(PATHOLOGIES), output_stride: int = 32) -> nn.Module:
    """ResNet-50 with a fresh linear head; weights=None, so nothing is ever downloaded. output_stride 16 dilates
    layer4 instead of striding it (OUTPUT_STRIDES)."""
    if output_stride not in OUTPUT_STRIDES:
        raise XRayError(f"Output stride {output_stride} is not built here: choose 32 or 16.")
    network = resnet50(weights=None, replace_stride_with_dilation=[False, False, output_stride == 16])
    network.fc = nn.Linear(network.fc.in_features, num_labels)
    return network


def output_stride_of(network: nn.Module) -> int:
    """32, or 16 where layer4 is dilated instead of strided (build_network)."""
    return 16 if _unwrap(network).layer4[0].conv2.stride == (1, 1) else 32


def architecture(output_stride: int) -> str:
    return ARCHITECTURE if output_stride == 32 else f"{ARCHITECTURE}, layer4 dilated (output stride {output_stride})"


def choose_device(requested: str | torch.device | None = None) -> torch.device:
    """The argument, else $XAI_DEVICE, else CUDA when present, else the CPU."""
    choice = requested if requested is not None else os.environ.get(DEVICE_ENV) or None
    if choice is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except (RuntimeError, TypeError) as error:
        raise XRayError(f"Unknown device '{choice}': use 'cpu', 'cuda' or 'cuda:N'.") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise XRayError(f"Device '{choice}' was asked for but no CUDA GPU is available; use 'cpu'.")
    return device


def default_card() -> Path:
    """$XAI_MODEL_CARD when set, else the shipped checkpoint's card."""
    return Path(os.environ.get(CARD_ENV) or DEFAULT_CARD)


def load_model(card_path: str | os.PathLike | None = None, device: str | torch.device | None = None) -> XRayModel:
    """Load a checkpoint after checking its card, its label order and its weights' sha256.

    card_path defaults to default_card(); device to choose_device().
    """
    card_path = Path(card_path) if card_path is not None else default_card()
    card = read_card(card_path)
    weights_path = card_path.parent / card.weights_file
    if not weights_path.is_file():
        raise XRayError(f"The weights file named by {card_path.name} is missing: {weights_path.name}.")
    blob = weights_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != card.weights_sha256:
        raise XRayError(
            f"The weights file {weights_path.name} does not match the sha256 in its model card: "
            "it was modified, truncated or belongs to another model. Refusing to load it."
        )
    try:
        state = load_safetensors(blob)
    except Exception as error:  # safetensors raises its own error types for malformed files
        raise XRayError(f"{weights_path.name} is not a readable safetensors file.") from error
    network = build_network(output_stride=card.output_stride)
    try:
        network.load_state_dict({name: tensor.float() for name, tensor in state.items()}, strict=True)
    except RuntimeError as error:
        raise XRayError(f"{weights_path.name} does not hold a ResNet-50 with a 14-label head.") from error
    chosen = choose_device(device)
    network = network.to(chosen).eval()
    if chosen.type == "cpu":
        network = network.to(memory_format=torch.channels_last)
    network.requires_grad_(False)
    ood.check(card.out_of_distribution)
    return XRayModel(network=network, card=card, device=chosen, input_spec=card.input)


def save_checkpoint(
    network: nn.Module, card: dict[str, Any], card_path: str | os.PathLike, *, dtype: str = "float16"
) -> ModelCard:
    """Write <card_path minus .json>.safetensors and the card with the weights' sha256; return the card."""
    card_path = Path(card_path)
    card_path.parent.mkdir(parents=True, exist_ok=True)
    weights_path = card_path.with_suffix(".safetensors")
    state = {
        name: tensor.detach().to("cpu", _SAVED_DTYPES[dtype] if tensor.is_floating_point() else tensor.dtype).contiguous()
        for name, tensor in _unwrap(network).state_dict().items()
    }
    blob = save_safetensors(state)
    weights_path.write_bytes(blob)
    stride = output_stride_of(network)
    full_card = {
        "format": CARD_FORMAT,
        "target_layer": TARGET_LAYER,
        "labels": list(PATHOLOGIES),
        **card,
        "architecture": architecture(stride),
        "output_stride": stride,
        "weights_file": weights_path.name,
        "weights_dtype": dtype,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    }
    return write_card(card_path, full_card)


def _unwrap(network: nn.Module) -> nn.Module:
    """The plain model inside a DistributedDataParallel wrapper."""
    return network.module if isinstance(network, nn.parallel.DistributedDataParallel) else network
