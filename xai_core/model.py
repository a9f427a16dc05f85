"""The classifier: a torchvision ResNet-50 with a 14-output head, its checkpoint and model card.

A checkpoint is two files side by side in a folder:
  <name>.safetensors  the weights (float16 or bfloat16 on disk, float32 in memory)
  <name>.json         the model card: architecture, label order, input size and
                      normalisation, training data and command, metrics, per-label
                      operating thresholds and validation status, the weights' sha256
Nothing is ever unpickled: safetensors holds tensors only.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn
from torchvision.models import resnet50

from . import calibration, ood
from .errors import XRayError
from .labels import PATHOLOGIES
from .ood import FeatureDistribution

CARD_FORMAT = "cxr-xai-model-card/1"
ARCHITECTURE = "torchvision resnet50, fc = Linear(2048, 14), weights=None"
TARGET_LAYER = "layer4"  # the last convolutional block: Grad-CAM++ reads its output
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_CARD = WEIGHTS_DIR / "resnet50_cxr14.json"
DEVICE_ENV = "XAI_DEVICE"
CARD_ENV = "XAI_MODEL_CARD"  # another checkpoint's card, e.g. a hospital's own fine-tuned model
_SAVED_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class InputSpec:
    """How an XRay's grey pixels in [0, 1] become the network's input.

    The whole image is resized (squashed, no padding: padding would add borders
    for the model to learn) to size x size, then normalised and repeated to 3 channels.
    """

    size: int = 224
    mean: float = 0.5
    std: float = 0.25

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "mean": self.mean,
            "std": self.std,
            "channels": 3,
            "resize": "whole image to size x size, bilinear with antialiasing, aspect ratio not kept",
            "pixels": "grey in [0, 1] after windowing and MONOCHROME1 inversion, repeated to 3 channels",
        }

    def resize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(..., H, W) float in [0, 1] -> (..., size, size)."""
        lead = pixels.shape[:-2]
        flat = pixels.reshape(-1, 1, *pixels.shape[-2:]).float()
        out = F.interpolate(flat, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return out.clamp_(0.0, 1.0).reshape(*lead, self.size, self.size)

    def normalise(self, resized: torch.Tensor) -> torch.Tensor:
        """(N, S, S) in [0, 1] -> (N, 3, S, S) network input."""
        return ((resized - self.mean) / self.std).unsqueeze(1).expand(-1, 3, -1, -1)

    def prepare(self, pixels: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """One grey image (H, W) -> (1, 3, size, size) on device."""
        tensor = torch.tensor(np.asarray(pixels, dtype=np.float32), device=device)  # a copy: pixels may be read-only
        return self.normalise(self.resize(tensor).unsqueeze(0)).contiguous()


@dataclass(frozen=True)
class XRayModel:
    """A loaded classifier: the network in eval mode, its model card and its device."""

    network: nn.Module
    card: dict[str, Any]
    device: torch.device
    input_spec: InputSpec
    feature_distribution: FeatureDistribution | None = None  # for the out-of-distribution warning

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.card["labels"])

    @property
    def version(self) -> str:
        return str(self.card.get("model_version", "unknown"))

    def thresholds(self) -> dict[str, float]:
        """Per-label operating thresholds from the card (0.5 where it gives none), on the probabilities' scale.

        The card keeps them as chosen on validation, on the raw sigmoid; with a
        calibration they are mapped through it, so each makes the same decisions.
        """
        given = self.card.get("thresholds", {})
        return {label: calibration.threshold(self.card, label, float(given.get(label, 0.5))) for label in self.labels}

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """(..., 14) logits -> probabilities: the card's calibration (calibration.py) where it has one, else sigmoid."""
        return calibration.probabilities(self.card, logits)

    def test_figures(self, label: str) -> dict[str, Any]:
        """The card's NIH test figures for one label: n, positives, auroc, auroc_ci95, ..., "map_resemblance"
        (its maps' median correlation with its average map) and, where radiologists boxed the finding,
        "alignment" (model, random and average_map figures); {} if none."""
        report = self.card.get("metrics", {}).get("nih_test", {})
        figures = dict(report.get("labels", {}).get(label, {}))
        alignment = report.get("alignment", {}).get("per_finding", {}).get(label)
        resemblance = report.get("map_resemblance", {}).get("per_label", {}).get(label)
        if figures and alignment:
            figures["alignment"] = alignment
        if figures and resemblance is not None:
            figures["map_resemblance"] = resemblance
        return figures

    def validation_status(self) -> dict[str, str]:
        """Per-label words for the page, e.g. 'validated (35 test positives)'."""
        given = self.card.get("validation", {})
        return {label: given.get(label, {}).get("status", "not validated") for label in self.labels}


def build_network(num_labels: int = len(PATHOLOGIES)) -> nn.Module:
    """ResNet-50 with a fresh linear head; weights=None, so nothing is ever downloaded."""
    network = resnet50(weights=None)
    network.fc = nn.Linear(network.fc.in_features, num_labels)
    return network


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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_card(card_path: str | os.PathLike) -> dict[str, Any]:
    path = Path(card_path)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise XRayError(f"Model card not found: {path.name}. A checkpoint is a .json card beside its .safetensors weights.") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise XRayError(f"The model card {path.name} is not valid JSON; the checkpoint is damaged.") from error
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise XRayError(f"{path.name} is not a model card of this project (expected format '{CARD_FORMAT}').")
    if list(card.get("labels", [])) != list(PATHOLOGIES):
        raise XRayError(
            f"The checkpoint {path.name} predicts a different label list or order than this version "
            f"of the viewer ({len(card.get('labels', []))} labels); it cannot be used."
        )
    return card


def input_spec_of(card: dict[str, Any]) -> InputSpec:
    spec = card.get("input", {})
    return InputSpec(size=int(spec.get("size", 224)), mean=float(spec.get("mean", 0.5)), std=float(spec.get("std", 0.25)))


def default_card() -> Path:
    """$XAI_MODEL_CARD when set, else the shipped checkpoint's card."""
    return Path(os.environ.get(CARD_ENV) or DEFAULT_CARD)


def load_model(card_path: str | os.PathLike | None = None, device: str | torch.device | None = None) -> XRayModel:
    """Load a checkpoint after checking its card, its label order and its weights' sha256.

    card_path defaults to default_card(); device to choose_device().
    """
    card_path = Path(card_path) if card_path is not None else default_card()
    card = read_card(card_path)
    weights_path = card_path.parent / card.get("weights_file", "")
    if not weights_path.is_file():
        raise XRayError(f"The weights file named by {card_path.name} is missing: {weights_path.name}.")
    blob = weights_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != card.get("weights_sha256"):
        raise XRayError(
            f"The weights file {weights_path.name} does not match the sha256 in its model card: "
            "it was modified, truncated or belongs to another model. Refusing to load it."
        )
    try:
        state = load_safetensors(blob)
    except Exception as error:  # safetensors raises its own error types for malformed files
        raise XRayError(f"{weights_path.name} is not a readable safetensors file.") from error
    network = build_network()
    try:
        network.load_state_dict({name: tensor.float() for name, tensor in state.items()}, strict=True)
    except RuntimeError as error:
        raise XRayError(f"{weights_path.name} does not hold a ResNet-50 with a 14-label head.") from error
    chosen = choose_device(device)
    network = network.to(chosen).eval()
    if chosen.type == "cpu":
        network = network.to(memory_format=torch.channels_last)
    network.requires_grad_(False)
    return XRayModel(network=network, card=card, device=chosen, input_spec=input_spec_of(card),
                     feature_distribution=ood.load(card, card_path))


def update_card(card_path: str | os.PathLike, **sections: Any) -> dict[str, Any]:
    """Set top-level sections of a model card on disk (its weights and their digest untouched); return the card."""
    card = read_card(card_path)
    card.update(sections)
    Path(card_path).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def save_checkpoint(
    network: nn.Module, card: dict[str, Any], card_path: str | os.PathLike, *, dtype: str = "float16"
) -> dict[str, Any]:
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
    full_card = {
        "format": CARD_FORMAT,
        "architecture": ARCHITECTURE,
        "target_layer": TARGET_LAYER,
        "labels": list(PATHOLOGIES),
        **card,
        "weights_file": weights_path.name,
        "weights_dtype": dtype,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    }
    card_path.write_text(json.dumps(full_card, indent=2) + "\n", encoding="utf-8")
    return full_card


def _unwrap(network: nn.Module) -> nn.Module:
    """The plain model inside a DistributedDataParallel wrapper."""
    return network.module if isinstance(network, nn.parallel.DistributedDataParallel) else network
