"""Is this image like the frontal chest radiographs the model was trained on?

The model's own features, average-pooled at the end of two blocks (layer3's
1024 values and layer4's 2048, which the linear head reads), of the training
images are summarised per block by a probabilistic PCA: their mean, the top
principal directions with their variances, and one variance for everything
else. An image's distance in a block is the Mahalanobis distance of its
features' direction (scaled to unit length) under that block's model; its
score is the root of the sum of the squared block distances (the two blocks
as independent Gaussians). A knee, an MR slice, an ultrasound frame or a
photograph lands far from the chest films; the threshold is the 99th
percentile of the scores of the validation images (so about 1 chest film in
100 is flagged).

Why two blocks: with layer4 alone, model 0.3.0's features let a photograph,
a CT slice and an ultrasound frame score below the threshold (11 of 14
non-chest images flagged, AUROC 0.980 against NIH test films); layer3 keeps
more of the image's texture, which is what sets those apart. The joint score,
chosen before its result was seen, flags 14 of 14 (AUROC 0.998). Model cards
fitted before 0.3.0 hold layer4 statistics only and are read as such.

The statistics live in a safetensors file beside the weights, named and
checksummed in the model card, like the weights themselves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .card import OutOfDistribution
from .errors import XRayError

COMPONENTS = 64
BLOCKS = ("layer3", "layer4")  # the ResNet blocks whose pooled features are modelled
FALSE_ALARM_RATE = 0.01  # share of in-distribution validation images flagged


@dataclass(frozen=True)
class BlockDistribution:
    """PPCA of one block's pooled feature directions."""

    mean: np.ndarray  # (K,)
    components: np.ndarray  # (k, K), orthonormal rows
    variances: np.ndarray  # (k,)
    residual_variance: float

    def distance(self, features: np.ndarray) -> float:
        """Mahalanobis distance of one image's feature direction under the training images' PPCA model."""
        centred = direction(features) - self.mean
        projected = self.components @ centred
        residual = max(float(centred @ centred - projected @ projected), 0.0)
        return float(np.sqrt((projected**2 / self.variances).sum() + residual / self.residual_variance))


@dataclass(frozen=True)
class FeatureDistribution:
    blocks: dict[str, BlockDistribution]  # by block name: "layer3", "layer4"
    threshold: float

    def distance(self, features: dict[str, np.ndarray]) -> float:
        """The root of the summed squared distances of the image's pooled features in each block."""
        return float(np.sqrt(sum(block.distance(features[name]) ** 2 for name, block in self.blocks.items())))


def direction(features: np.ndarray) -> np.ndarray:
    """Features scaled to unit length (per row).

    The overall size of the pooled features varies with the finding and the
    population (the pediatric films' are much larger than the adults'), which
    swamped the raw distance: non-chest images scored below many pediatric
    validation films. Their direction separates the two (AUROC 0.963 raw,
    0.997 on unit vectors, non-chest against NIH test films).
    """
    features = np.asarray(features, dtype=np.float64)
    return features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)


def fit_block(features: np.ndarray, components: int = COMPONENTS) -> BlockDistribution:
    """PPCA of (N, K) training features' directions."""
    features = direction(features)
    mean = features.mean(axis=0)
    _, singular, directions = np.linalg.svd(features - mean, full_matrices=False)
    eigenvalues = singular**2 / max(len(features) - 1, 1)
    k = min(components, len(eigenvalues) - 1)
    rest = eigenvalues[k:]
    residual = float(rest.sum() / max(features.shape[1] - k, 1))
    return BlockDistribution(mean=mean, components=directions[:k], variances=np.maximum(eigenvalues[:k], 1e-12),
                             residual_variance=max(residual, 1e-12))


def fit(features: dict[str, np.ndarray]) -> FeatureDistribution:
    """One PPCA per block of (N, K) training features; the threshold is set later from validation images."""
    return FeatureDistribution(blocks={name: fit_block(features[name]) for name in BLOCKS}, threshold=float("inf"))


def save(distribution: FeatureDistribution, path: Path) -> str:
    """Write the statistics (tensors named block.statistic); return the file's sha256."""
    tensors = {}
    for name, block in distribution.blocks.items():
        tensors |= {
            f"{name}.mean": torch.from_numpy(block.mean.astype(np.float32)),
            f"{name}.components": torch.from_numpy(block.components.astype(np.float32)),
            f"{name}.variances": torch.from_numpy(block.variances.astype(np.float32)),
            f"{name}.residual_variance": torch.tensor([block.residual_variance], dtype=torch.float32),
        }
    blob = save_safetensors(tensors)
    path.write_bytes(blob)
    return hashlib.sha256(blob).hexdigest()


def load(section: OutOfDistribution | None, card_path: Path) -> FeatureDistribution | None:
    """The card's out-of-distribution statistics, checked against their sha256; None when the card has none."""
    if section is None:
        return None
    path = Path(card_path).parent / section.file
    try:
        blob = path.read_bytes()
    except OSError as error:
        raise XRayError(f"The out-of-distribution statistics {path.name} named by the model card are missing.") from error
    if hashlib.sha256(blob).hexdigest() != section.sha256:
        raise XRayError(f"{path.name} does not match the sha256 in the model card; refusing to load it.")
    tensors = {name: tensor.double().numpy() for name, tensor in load_safetensors(blob).items()}
    # Cards fitted before 0.3.0 have layer4 statistics only, their tensors named without the block.
    prefixes = {name: f"{name}." for name in section.blocks} if section.blocks else {"layer4": ""}
    blocks = {
        name: BlockDistribution(mean=tensors[prefix + "mean"], components=tensors[prefix + "components"],
                                variances=tensors[prefix + "variances"],
                                residual_variance=float(tensors[prefix + "residual_variance"][0]))
        for name, prefix in prefixes.items()
    }
    return FeatureDistribution(blocks=blocks, threshold=section.threshold)
