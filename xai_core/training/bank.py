"""The training data in memory: decoded films, their labels and boxes, and each epoch's draw.

Images are decoded once with the same reader as the viewer and kept as uint8
at the input size; boxes are kept in coordinates relative to the whole film
(0..1), since the input spec squashes the whole film to a square.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from ..data import Case, Finding, read_boxes, read_label_csv, read_nih, read_pediatric, read_rsna
from ..errors import XRayError
from ..imaging import read_xray
from ..labels import PATHOLOGIES, SCORED_WITH
from ..preprocessing import InputSpec
from .config import TrainConfig

log = logging.getLogger("xai_core.train")

# RSNA's finding, learnt by a training-only output beside the 14 (never shipped: the card's labels are the 14).
OPACITY = "Lung Opacity"
TARGETS: tuple[str, ...] = (*PATHOLOGIES, OPACITY)
# Which maps a box supervises. An RSNA opacity box marks where opacities suspicious for pneumonia are, so
# the map it is scored with (Pneumonia) has its evidence on that film there too: the box loss moves where
# a map's evidence lies, it never says the label is present.
BOX_TARGETS: dict[str, tuple[str, ...]] = {finding: (finding, label) for finding, label in SCORED_WITH.items()}


@dataclass
class ImageBank:
    """Decoded, resized films (uint8, N x S x S) with labels (N x 14, NaN unknown), RSNA opacity (N, NaN unknown)
    and boxes (B x 6: film, target index in TARGETS, x0, y0, x1, y1 as fractions of the film)."""

    pixels: torch.Tensor
    labels: torch.Tensor
    sources: list[str]
    opacity: torch.Tensor | None = None
    boxes: torch.Tensor | None = None

    def __post_init__(self) -> None:
        count = len(self.sources)
        if self.opacity is None:
            self.opacity = torch.full((count,), float("nan"))
        if self.boxes is None:
            self.boxes = torch.empty((0, 6))

    @classmethod
    def load(cls, cases: list[Case], size: int, description: str,
             findings: dict[Path, list[Finding]] | None = None) -> ImageBank:
        spec = InputSpec(size=size)
        findings = findings or {}
        pixels = torch.empty((len(cases), size, size), dtype=torch.uint8)
        boxes = []
        started = time.monotonic()
        for index, case in enumerate(cases):
            image = read_xray(case.image).pixels
            pixels[index] = (spec.resize(torch.from_numpy(image)) * 255.0).round_().to(torch.uint8)
            for finding in findings.get(case.image, []):
                boxes += [(index, TARGETS.index(target), *_relative_box(finding, image.shape, case.image.name))
                          for target in BOX_TARGETS.get(finding.label, (finding.label,))]
        log.info("decoded %d %s images at %d px in %.0f s (%d boxes)", len(cases), description, size,
                 time.monotonic() - started, len(boxes))
        labels = torch.from_numpy(np.stack([case.labels for case in cases])) if cases else torch.empty((0, len(PATHOLOGIES)))
        return cls(pixels=pixels, labels=labels, sources=[case.source for case in cases],
                   opacity=torch.tensor([case.opacity for case in cases], dtype=torch.float32),
                   boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 6))

    def boxes_of(self, indices: torch.Tensor) -> torch.Tensor:
        """The boxes of the films at `indices`, their first column renumbered to positions in `indices`."""
        rows = [torch.cat([torch.full((int((self.boxes[:, 0] == film).sum()), 1), float(position)),
                           self.boxes[self.boxes[:, 0] == film, 1:]], 1)
                for position, film in enumerate(indices.tolist())]
        return torch.cat(rows) if rows else torch.empty((0, 6))


def _relative_box(finding: Finding, shape: tuple[int, ...], name: str) -> tuple[float, float, float, float]:
    height, width = shape[:2]
    box = finding.box
    x0, y0, x1, y1 = max(box.x, 0.0), max(box.y, 0.0), min(box.x + box.w, width), min(box.y + box.h, height)
    if x1 <= x0 or y1 <= y0:
        raise XRayError(f"The {finding.label} box on {name} (x={box.x}, y={box.y}, w={box.w}, h={box.h}) lies "
                        f"outside the image ({width} x {height} pixels): check that the box CSV matches the images.")
    return x0 / width, y0 / height, x1 / width, y1 / height


def read_training_boxes(pairs: list[tuple[Path, Path]]) -> dict[Path, list[Finding]]:
    """(box CSV, images folder) pairs -> findings by image path; every boxed image must exist."""
    findings: dict[Path, list[Finding]] = {}
    for csv_path, images in pairs:
        for name, found in read_boxes(csv_path, other_findings=BOX_TARGETS).items():
            path = Path(images) / name
            if not path.is_file():
                raise XRayError(f"{Path(csv_path).name} has a box on {name}, which is not in {images}.")
            findings.setdefault(path, []).extend(found)
    return findings


def training_cases(config: TrainConfig) -> tuple[list[Case], list[Case]]:
    """Training and validation films from every source the run names (never a `test` split)."""
    train, val = [], []
    if config.nih:
        train += read_nih(config.nih, ["train"])
        val += read_nih(config.nih, ["val"])
    if config.pediatric:
        train += read_pediatric(config.pediatric, ["train"])
        val += read_pediatric(config.pediatric, ["val"])
    if config.rsna:
        train += read_rsna(config.rsna, ["train"])
        val += read_rsna(config.rsna, ["val"])
    for folder in config.data:
        source = Path(folder).name
        train += read_label_csv(Path(folder) / "labels.csv", Path(folder) / "images", source=source, splits=["train"])
        val += read_label_csv(Path(folder) / "labels.csv", Path(folder) / "images", source=source, splits=["val"])
    for csv_path, images in config.csv:
        train += read_label_csv(csv_path, images)
    for csv_path, images in config.val_csv:
        val += read_label_csv(csv_path, images)
    if not train:
        raise SystemExit("No training images: give --nih, --pediatric, --rsna, --data or --csv.")
    return train, val


def source_weights(sources: list[str], shares: dict[str, float]) -> torch.Tensor:
    """Per-film draw weights: each named source gets its share of the draw; the rest is split by size."""
    names = sorted(set(sources))
    counts = {name: sources.count(name) for name in names}
    unknown = set(shares) - set(names)
    if unknown:
        raise SystemExit(f"--share names sources without training images: {', '.join(sorted(unknown))} "
                         f"(the sources are {', '.join(names)}).")
    given = sum(shares.values())
    if given > 1 + 1e-9 or any(value < 0 for value in shares.values()):
        raise SystemExit("--share fractions must be non-negative and sum to at most 1.")
    rest = [name for name in names if name not in shares]
    rest_total = sum(counts[name] for name in rest)
    per_source = {name: shares.get(name, (1 - given) * counts[name] / rest_total if rest_total else 0.0)
                  for name in names}
    return torch.tensor([per_source[source] / counts[source] for source in sources], dtype=torch.float64)


def epoch_plan(sources: list[str], epoch: int, seed: int, shares: dict[str, float]) -> torch.Tensor:
    """This epoch's film order: a weighted draw with replacement so each source gets its share.

    Without it the 4,448 pediatric films would outnumber NIH's 896 five to one
    and the model would mostly learn children's pneumonia.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    if not shares:
        return torch.randperm(len(sources), generator=generator)
    return torch.multinomial(source_weights(sources, shares), len(sources), replacement=True, generator=generator)


def rank_order(sources: list[str], epoch: int, config: TrainConfig, rank: int, world: int) -> torch.Tensor:
    """The indices (films, or cached views of films) this process trains on in this epoch, given each one's
    source: its DistributedSampler share of the plan."""
    plan = _Plan(epoch_plan(sources, epoch, config.seed, config.shares))
    sampler = DistributedSampler(plan, num_replicas=world, rank=rank, shuffle=False, drop_last=True)
    return torch.tensor([plan[position] for position in sampler], dtype=torch.long)


class _Plan(torch.utils.data.Dataset):
    def __init__(self, order: torch.Tensor):
        self.order = order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int) -> int:
        return int(self.order[index])


def count_sources(sources: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for source in sources:
        counts[source] = counts.get(source, 0) + 1
    return counts
