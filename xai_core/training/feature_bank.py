"""Training the last block from cached features: the frozen stem to layer3 runs once per augmented view.

A 320 px step through layer3 and layer4 costs a CPU several times what layer4 alone does. With the stem to
layer3 frozen (--freeze-through layer3) their output for a given view never changes, so each film's
--cached-views augmented views go through them once, at the start of the run, and every step trains layer4
and the head on those features. What is trained is still the map the viewer draws (layer4's features and
the head, in Grad-CAM++'s closed form, with BatchNorm as the run sets it); what is given up is a fresh
augmentation at every step: each film keeps its few fixed views, and its boxes are warped with each.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .augment import augment, random_affine
from .bank import ImageBank
from .config import TrainConfig

log = logging.getLogger("xai_core.train")

# Films per forward pass while the bank is built.
_CHUNK = 32


@dataclass
class FeatureBank:
    """layer3's output on each cached view (V, C, h, w; float16), the film each view is of (V,), the view's
    warp (V, 2, 3) and the starting checkpoint's 14 logits on it (V, 14; what distillation holds)."""

    features: torch.Tensor
    films: torch.Tensor
    theta: torch.Tensor
    reference: torch.Tensor

    def sources(self, bank: ImageBank) -> list[str]:
        return [bank.sources[film] for film in self.films.tolist()]


def cached_films(bank: ImageBank, per_source: int) -> list[int]:
    """Every film with a box, and up to per_source others of each source, evenly spaced (deterministic)."""
    boxed = set(bank.boxes[:, 0].long().tolist())
    chosen = set(boxed)
    for source in sorted(set(bank.sources)):
        others = [index for index, name in enumerate(bank.sources) if name == source and index not in boxed]
        spacing = max(1.0, len(others) / per_source) if per_source > 0 else 0.0
        chosen.update(others[int(i * spacing)] for i in range(min(per_source, len(others))))
    return sorted(chosen)


def through_layer3(network: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The stem, layer1, layer2 and layer3 of a torchvision ResNet (what --freeze-through layer3 keeps fixed)."""
    stem = network.maxpool(network.relu(network.bn1(network.conv1(inputs))))
    return network.layer3(network.layer2(network.layer1(stem)))


def last_block(network: nn.Module, layer3_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """layer4 and the pooled linear head on layer3's output -> (14 logits, layer4's features): what the
    network's own forward pass computes from there (global average pool, then fc)."""
    features = network.layer4(layer3_output)
    return network.fc(features.mean((2, 3))), features


def cropped(features: torch.Tensor, theta: torch.Tensor, cells: int,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random crop of each view's layer3 map (N, C, h, w), `cells` smaller in height and width, and the warps
    (N, 2, 3) of what each crop shows. Convolutions are translation-equivariant, so layer4 on a crop is layer4 on
    the view moved by whole layer3 cells (16 px) and cropped, away from the crop's edges (a test checks it); the
    boxes and the prior follow through the composed warp."""
    n, _, h, w = features.shape
    offsets = torch.randint(0, cells + 1, (n, 2), generator=generator)  # (x, y) of each crop's corner, in cells
    crops = torch.stack([features[i, :, y : y + h - cells, x : x + w - cells]
                         for i, (x, y) in enumerate(offsets.tolist())])
    # a crop's coordinate u in affine_grid's [-1, 1] is the view's (size' / size) u + (size' + 2 offset) / size - 1
    size = torch.tensor([w, h], dtype=theta.dtype)
    scale = (size - cells) / size
    shift = (size - cells + 2 * offsets.to(theta.dtype)) / size - 1
    linear = theta[:, :, :2]
    return crops, torch.cat([linear * scale.view(1, 1, 2), theta[:, :, 2:] + linear @ shift.unsqueeze(2)], dim=2)


@torch.no_grad()
def build(network: nn.Module, reference: nn.Module | None, bank: ImageBank, films: list[int], config: TrainConfig,
          normalise, device: torch.device) -> FeatureBank:
    """Run config.cached_views augmented views of each film through the frozen blocks (view v of every film is
    drawn from one generator seeded by the run's seed and v, so a rebuilt bank is the same)."""
    network.eval()
    started = time.monotonic()
    features, film_rows, thetas, references = [], [], [], []
    for view in range(config.cached_views):
        generator = torch.Generator().manual_seed(config.seed * 7_919 + view)
        for first in range(0, len(films), _CHUNK):
            chunk = torch.tensor(films[first : first + _CHUNK], dtype=torch.long)
            theta = random_affine(len(chunk), config, generator)
            pixels = bank.pixels[chunk].to(device).float() / 255.0
            inputs = normalise(augment(pixels, theta, config, generator)).contiguous(memory_format=torch.channels_last)
            output = through_layer3(network, inputs)
            features.append(output.half().cpu())
            film_rows.append(chunk)
            thetas.append(theta)
            references.append(last_block(reference, output)[0].float().cpu() if reference is not None
                              else torch.zeros((len(chunk), network.fc.out_features)))
        log.info("cached view %d/%d of %d films (%.0f s)", view + 1, config.cached_views, len(films),
                 time.monotonic() - started)
    return FeatureBank(features=torch.cat(features), films=torch.cat(film_rows), theta=torch.cat(thetas),
                       reference=torch.cat(references))


def bank_key(config: TrainConfig, films: list[int]) -> str:
    """What the cached features depend on: the starting weights, the films, the views and their warps."""
    init = Path(config.init_from).read_bytes() if config.init_from else b""
    described = json.dumps({"views": config.cached_views, "size": config.image_size, "seed": config.seed,
                            "zoom": list(config.zoom), "rotate": config.rotate_deg, "shift": config.shift,
                            "films": films}, sort_keys=True)
    return hashlib.sha256(init + described.encode()).hexdigest()


def load_or_build(path: Path, network: nn.Module, reference: nn.Module | None, bank: ImageBank,
                  config: TrainConfig, normalise, device: torch.device) -> FeatureBank:
    """The bank saved in the work folder when it was built for this run's settings; else build and save it."""
    films = cached_films(bank, config.cached_films_per_source)
    key = bank_key(config, films)
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("key") == key:
            log.info("cached features read from %s (%d views)", path, len(saved["films"]))
            return FeatureBank(features=saved["features"], films=saved["films"], theta=saved["theta"],
                               reference=saved["reference"])
        log.info("cached features in %s were built for other settings: building anew", path)
    cached = build(network, reference, bank, films, config, normalise, device)
    torch.save({"key": key, "features": cached.features, "films": cached.films, "theta": cached.theta,
                "reference": cached.reference}, path)
    return cached
