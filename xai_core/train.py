"""Fine-tuning the 14-label ResNet-50: one process, or several with `torchrun` (DDP).

Images are decoded once with the same reader as the viewer and kept in memory
as uint8 at a little more than the input size; augmentation runs on whole
batches (one affine warp and intensity changes), so the CPU spends its time in
the network, not in data loading. The run is defined by its step count and
seed: data order, augmentation and checkpoints are reproducible, and --resume
continues exactly where the last checkpoint left off.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shlex
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

from .data import Case, read_label_csv, read_nih, read_pediatric
from .explain import captured_output
from .imaging import read_xray
from .labels import PATHOLOGIES
from .model import InputSpec, _unwrap, build_network, choose_device, load_model, read_card, save_checkpoint
from .stats import auroc, choose_threshold

log = logging.getLogger("xai_core.train")

DATA_SOURCES = {
    "nih": "NIH Clinical Center ChestX-ray14 (Wang et al., CVPR 2017), a 1,402-image subset at 512 px; "
    "released without use restrictions, attribution required.",
    "pediatric": "Pediatric chest X-rays, Guangzhou Women and Children's Medical Center (Kermany et al., Cell 2018); "
    "CC BY 4.0. Only the pneumonia label is known; the other 13 are masked as unknown.",
}
LIMITATIONS = [
    "Research and education use only; not for diagnosis or treatment decisions.",
    "Trained from random initialisation (no pretrained weights) on the CPU for a short schedule, on about 900 adult "
    "NIH images and 4,400 pediatric images: far less data than a clinical model needs.",
    "NIH labels were mined from radiology reports by NLP and are noisy; the pediatric set is one hospital's children "
    "aged 1-5.",
    "Shortcut risk: in the NIH subset the follow-up number, AP/PA view and devices correlate with the labels; check "
    "the heatmaps and the alignment figures, which show how often attention falls in the radiologists' boxes.",
    "Anatomical priors kept the training's map evidence on the lung fields (the heart for cardiomegaly): a map there "
    "shows where the model was allowed to look, not that it found the lesion. Read the pointing game against the "
    "average-map control (the model's mean map, the same for every film), not only against a random map, and the "
    "map resemblance (each map's correlation with that average map; near 1, the maps barely change from film to film).",
    "Labels with fewer than 10 positives in the NIH test split are not validated.",
    "Inputs are squashed to a square; lateral views, other body parts and non-radiographs are out of distribution.",
]

# Labels with fewer known positives than this in the validation data get no
# tuned threshold and no say in checkpoint selection.
MIN_VAL_POSITIVES = 5


@dataclass
class TrainConfig:
    out: Path  # the model card to write; the weights go beside it
    work_dir: Path  # training state, log and intermediate checkpoints (not for git)
    nih: Path | None = None
    pediatric: Path | None = None
    csv: list[tuple[Path, Path]] = field(default_factory=list)  # (labels CSV, images folder), all used for training
    val_csv: list[tuple[Path, Path]] = field(default_factory=list)
    image_size: int = 224
    batch_size: int = 32
    steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    nih_share: float = 0.5  # fraction of each batch drawn from NIH when the pediatric set is used too
    zoom: tuple[float, float] = (1.0, 1.3)
    rotate_deg: float = 8.0
    shift: float = 0.08
    attention_prior: float = 0.0  # weight of the loss on class evidence outside its anatomical prior (NIH images)
    prior_regions: str = "thorax"  # "thorax": one mask for all labels; "per-label": anatomical_priors()
    negative_evidence: float = 0.0  # weight of the loss on a label's positive evidence on images known not to have it
    equivariance: float = 0.0  # weight of the loss on maps that do not move with the film (a second, shifted view)
    init_from: Path | None = None  # a model card whose weights start the training (fine-tuning)
    seed: int = 0
    validate_every: int = 500
    checkpoint_minutes: float = 5.0
    resume: bool = False
    device: str | None = None
    model_version: str = "0.1.0"


# ---------------------------------------------------------------- data in memory


@dataclass
class ImageBank:
    """Decoded, resized images (uint8, N x S x S) with their labels (N x 14, NaN unknown)."""

    pixels: torch.Tensor
    labels: torch.Tensor
    sources: list[str]

    @classmethod
    def load(cls, cases: list[Case], size: int, description: str) -> ImageBank:
        spec = InputSpec(size=size)
        pixels = torch.empty((len(cases), size, size), dtype=torch.uint8)
        started = time.monotonic()
        for index, case in enumerate(cases):
            resized = spec.resize(torch.from_numpy(read_xray(case.image).pixels))
            pixels[index] = (resized * 255.0).round_().to(torch.uint8)
        log.info("decoded %d %s images at %d px in %.0f s", len(cases), description, size, time.monotonic() - started)
        labels = torch.from_numpy(np.stack([case.labels for case in cases])) if cases else torch.empty((0, len(PATHOLOGIES)))
        return cls(pixels=pixels, labels=labels, sources=[case.source for case in cases])

    @property
    def is_nih(self) -> torch.Tensor:
        return torch.tensor([source == "nih" for source in self.sources])


def epoch_plan(bank: ImageBank, epoch: int, seed: int, nih_share: float) -> torch.Tensor:
    """This epoch's image order: a weighted draw with replacement so NIH gets nih_share of the images.

    Without it the 4,448 pediatric images would outnumber NIH's 896 five to one
    and the model would mostly learn children's pneumonia.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    is_nih = torch.tensor([source == "nih" for source in bank.sources])
    count = len(bank.sources)
    if 0 < int(is_nih.sum()) < count:
        weights = torch.where(is_nih, nih_share / is_nih.sum(), (1 - nih_share) / (~is_nih).sum())
        return torch.multinomial(weights, count, replacement=True, generator=generator)
    return torch.randperm(count, generator=generator)


def rank_order(bank: ImageBank, epoch: int, config: TrainConfig, rank: int, world: int) -> torch.Tensor:
    """The image indices this process trains on in this epoch: its DistributedSampler share of the plan."""
    plan = _Plan(epoch_plan(bank, epoch, config.seed, config.nih_share))
    sampler = DistributedSampler(plan, num_replicas=world, rank=rank, shuffle=False, drop_last=True)
    return torch.tensor([plan[position] for position in sampler], dtype=torch.long)


class _Plan(torch.utils.data.Dataset):
    def __init__(self, order: torch.Tensor):
        self.order = order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int) -> int:
        return int(self.order[index])


# ---------------------------------------------------------------- augmentation


def random_affine(n: int, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) affine matrices for F.affine_grid: random zoom, rotation and shift."""

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    zoom = uniform(*config.zoom)
    angle = uniform(-config.rotate_deg, config.rotate_deg) * math.pi / 180
    shift_x, shift_y = uniform(-config.shift, config.shift), uniform(-config.shift, config.shift)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    return torch.stack([torch.stack([cos, -sin, shift_x * 2], 1), torch.stack([sin, cos, shift_y * 2], 1)], 1)


def warp(batch: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """(N, S, S) -> (N, size, size) through the affine matrices theta (edges repeated)."""
    grid = F.affine_grid(theta.to(batch.device), (batch.shape[0], 1, size, size), align_corners=False)
    return F.grid_sample(batch.unsqueeze(1), grid, mode="bilinear", padding_mode="border", align_corners=False).squeeze(1)


def augment(batch: torch.Tensor, theta: torch.Tensor, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """(N, S, S) in [0, 1] -> (N, size, size): the affine warp theta, then random intensity changes.

    No horizontal flip: chest anatomy is lateralised (heart on the left, liver on
    the right, the aortic knob), so a flipped film is not a plausible radiograph
    and flips would blur exactly the left-right cues that cardiomegaly and
    lateralised findings depend on.
    """
    n = batch.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return (low + (high - low) * torch.rand(n, generator=generator)).view(n, 1, 1).to(batch.device)

    warped = warp(batch, theta, config.image_size).clamp(1e-4, 1.0)
    gamma, contrast, brightness = torch.exp(uniform(-0.35, 0.35)), uniform(0.8, 1.2), uniform(-0.08, 0.08)
    noise = torch.randn(warped.shape, generator=generator).to(batch.device) * uniform(0, 0.03)
    out = (warped**gamma - 0.5) * contrast + 0.5 + brightness + noise
    return out.clamp(0.0, 1.0)


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


# ---------------------------------------------------------------- loss


def positive_weights(labels: torch.Tensor, cap: float = 10.0) -> torch.Tensor:
    """neg/pos per label over the known labels, capped: the rare findings count more."""
    known = ~torch.isnan(labels)
    positives = torch.nansum(labels, 0)
    negatives = known.sum(0) - positives
    return (negatives / positives.clamp(min=1)).clamp(1.0, cap)


def positive_evidence(features: torch.Tensor, head: nn.Linear) -> torch.Tensor:
    """(N, K, h, w) block output -> (N, 14, h, w) maps sum_k relu(W[c, k]) A_k: the part of the pooled linear
    head that can raise each label's logit, which is what Grad-CAM++ shows for this head."""
    return torch.einsum("nkhw,ck->nchw", features.float(), head.weight.float().clamp(min=0))


def evidence_weights(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, 14): each label counts by the model's own probability (the evidence it uses), fully where it is a
    known positive."""
    return torch.maximum(torch.sigmoid(logits.detach().float()), (targets == 1).float())


def evidence_outside(features: torch.Tensor, head: nn.Linear, inside: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean fraction of each label's positive evidence that lies outside its mask.

    features (N, K, h, w) from the last block (non-negative after its ReLU),
    its maps as positive_evidence draws them; inside in [0, 1]: (N, h, w), one
    mask for all labels, or (N, 14, h, w), one per label; weights (N, 14).
    """
    evidence = positive_evidence(features, head)
    if inside.dim() == 3:
        inside = inside.unsqueeze(1)
    outside = (evidence * (1 - inside)).sum((2, 3)) / (evidence.sum((2, 3)) + 1e-6)
    return (outside * weights).sum() / weights.sum().clamp(min=1e-6)


def evidence_on_negatives(features: torch.Tensor, head: nn.Linear, targets: torch.Tensor) -> torch.Tensor:
    """Mean positive evidence, in logit units, that each label's map holds on images known not to have it.

    The map Grad-CAM++ draws for label c is sum_k relu(W[c, k]) A_k. Behind a
    global average pool a model can keep the same bright spot on every film
    (0.3.1's Pneumonia map peaks in the middle of the image's right lung field
    on most images) and cancel it with negatively weighted channels and the
    bias: the logit is right, the map says nothing about this image. Asking
    the positive evidence to vanish where the label is known absent leaves the
    channels that speak for a label silent on films without it.
    features (N, K, h, w) after the block's ReLU; targets (N, 14), NaN unknown.
    """
    evidence = positive_evidence(features, head).mean((2, 3))
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


def map_equivariance(features: torch.Tensor, shifted: torch.Tensor, head: nn.Linear, cells: tuple[int, int],
                     weights: torch.Tensor) -> torch.Tensor:
    """How far each label's map fails to move with the film, in [0, 1] (weighted mean over images and labels).

    features and shifted (N, K, h, w): the last block on a view and on the same view read `cells` further
    (shifted_by_cells). A map that follows the film's content is the same on the cells both views see,
    one cell pattern moved; a map that sits on a fixed position of the input (a model's usual spot on
    every film) is not. The evidence maps (positive_evidence) are scaled to unit sum over the shared cells and compared by total variation distance. weights (N, 14).
    """
    dx, dy = cells
    h, w = features.shape[-2:]
    rows, cols = slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0))
    rows_shifted, cols_shifted = slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0))
    first = positive_evidence(features[:, :, rows, cols], head)
    second = positive_evidence(shifted[:, :, rows_shifted, cols_shifted], head)
    first = first / (first.sum((2, 3), keepdim=True) + 1e-6)
    second = second / (second.sum((2, 3), keepdim=True) + 1e-6)
    distance = 0.5 * (first - second).abs().sum((2, 3))
    return (distance * weights).sum() / weights.sum().clamp(min=1e-6)


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over the known labels only (NaN targets contribute nothing)."""
    known = ~torch.isnan(targets)
    losses = F.binary_cross_entropy_with_logits(
        logits.float(), torch.nan_to_num(targets, nan=0.0), pos_weight=pos_weight, reduction="none"
    )
    return (losses * known).sum() / known.sum().clamp(min=1)


# ---------------------------------------------------------------- validation


@torch.no_grad()
def predict(network: nn.Module, bank: ImageBank, spec: InputSpec, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """Probabilities (N, 14) for a bank stored at exactly the input size."""
    network.eval()
    outputs = []
    for start in range(0, len(bank.sources), batch_size):
        pixels = bank.pixels[start : start + batch_size].to(device).float() / 255.0
        with _autocast(device):
            logits = network(spec.normalise(pixels).contiguous(memory_format=torch.channels_last))
        outputs.append(torch.sigmoid(logits.float()).cpu())
    return torch.cat(outputs).numpy() if outputs else np.empty((0, len(PATHOLOGIES)))


def validation_report(probabilities: np.ndarray, bank: ImageBank) -> dict:
    """Per-source, per-label AUROC and positive counts; the score used to pick the checkpoint."""
    labels = bank.labels.numpy()
    sources = np.array(bank.sources)
    report: dict = {"per_source": {}}
    scores = []
    for source in sorted(set(bank.sources)):
        rows = sources == source
        per_label = {}
        for index, label in enumerate(PATHOLOGIES):
            known = ~np.isnan(labels[rows, index])
            positives = int(np.nansum(labels[rows, index]))
            if positives >= MIN_VAL_POSITIVES and positives < known.sum():
                value = auroc(labels[rows, index][known], probabilities[rows, index][known])
                per_label[label] = {"auroc": round(float(value), 4), "positives": positives, "n": int(known.sum())}
                scores.append(value)
        report["per_source"][source] = per_label
    report["score"] = float(np.mean(scores)) if scores else float("nan")
    return report


def val_thresholds(probabilities: np.ndarray, bank: ImageBank) -> dict[str, float]:
    """Operating thresholds chosen on validation data (Youden's J); 0.5 where too few positives."""
    labels = bank.labels.numpy()
    chosen = {}
    for index, label in enumerate(PATHOLOGIES):
        known = ~np.isnan(labels[:, index])
        positives = int(np.nansum(labels[:, index]))
        if positives >= MIN_VAL_POSITIVES and positives < known.sum():
            chosen[label] = round(float(choose_threshold(labels[known, index], probabilities[known, index])), 4)
        else:
            chosen[label] = 0.5
    return chosen


# ---------------------------------------------------------------- the run


def _autocast(device: torch.device):
    """Mixed precision where the hardware computes it natively; float32 elsewhere.

    On a CPU without bfloat16 instructions (AVX-512 BF16 or AMX) oneDNN emulates
    bfloat16, which made a 224 px training step about 20 times slower than float32 on an
    AVX2 machine.
    """
    if device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16) if torch.ops.mkldnn._is_mkldnn_bf16_supported() else nullcontext()
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return nullcontext()


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def training_cases(config: TrainConfig) -> tuple[list[Case], list[Case]]:
    train, val = [], []
    if config.nih:
        train += read_nih(config.nih, ["train"])
        val += read_nih(config.nih, ["val"])
    if config.pediatric:
        train += read_pediatric(config.pediatric, ["train"])
        val += read_pediatric(config.pediatric, ["val"])
    for csv_path, images in config.csv:
        train += read_label_csv(csv_path, images)
    for csv_path, images in config.val_csv:
        val += read_label_csv(csv_path, images)
    if not train:
        raise SystemExit("No training images: give --nih, --pediatric or --csv.")
    return train, val


def weights_digest(network: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(_unwrap(network).state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def run(config: TrainConfig, command: str) -> dict | None:
    """Train, validate, checkpoint; rank 0 writes the model card. Returns the card on rank 0."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() and config.device != "cpu" else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    device = choose_device(config.device)
    if device.type == "cuda" and distributed:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    config.work_dir.mkdir(parents=True, exist_ok=True)
    _setup_logging(config.work_dir / "train.log" if rank == 0 else None, rank)
    torch.manual_seed(config.seed)

    train_cases, val_cases = training_cases(config)
    train_bank = ImageBank.load(train_cases, config.image_size, "training")
    val_bank = ImageBank.load(val_cases, config.image_size, "validation") if rank == 0 else None
    pos_weight = positive_weights(train_bank.labels).to(device)
    spec = InputSpec(size=config.image_size)

    network = build_network().to(device).to(memory_format=torch.channels_last)
    prior = (anatomical_priors(config.image_size) if config.prior_regions == "per-label"
             else thorax_prior(config.image_size).unsqueeze(0)).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    step, best = 0, {"score": -1.0}
    state_path = config.work_dir / "state.pt"
    if config.init_from is not None and not (config.resume and state_path.exists()):
        network.load_state_dict(load_model(config.init_from, device="cpu").network.state_dict())
        log.info("initialised from %s", config.init_from)
    if config.resume and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        step, best = int(state["step"]), json.loads(state["best"])
        log.info("resumed from step %d (best validation score %.4f)", step, best["score"])
    if distributed:
        network = nn.parallel.DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)

    per_rank = config.batch_size // world
    steps_per_epoch = max(1, len(train_bank.sources) // config.batch_size)
    log.info(
        "training %d images (%s), validating on %d, %d steps of %d images, %d px, %d process(es) on %s",
        len(train_cases), _count_sources(train_bank.sources), len(val_cases), config.steps, config.batch_size,
        config.image_size, world, device,
    )
    started, last_save, seen_at_start = time.monotonic(), time.monotonic(), step
    loss_average = None
    while step < config.steps:
        epoch, position = divmod(step, steps_per_epoch)
        order = rank_order(train_bank, epoch, config, rank, world)
        while position < steps_per_epoch and step < config.steps:
            indices = order[position * per_rank : (position + 1) * per_rank]
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step * 101 + rank)
            pixels = train_bank.pixels[indices].to(device).float() / 255.0
            theta = random_affine(len(indices), config, generator)
            targets, is_nih = train_bank.labels[indices].to(device), train_bank.is_nih[indices].to(device)
            cells = None
            if config.equivariance > 0:  # each film twice: the second view moved by whole cells of the map
                cells = SHIFTS[int(torch.randint(len(SHIFTS), (1,), generator=generator))]
                theta = torch.cat([theta, shifted_by_cells(theta, cells, config.image_size // 32)])
                pixels, targets, is_nih = pixels.repeat(2, 1, 1), targets.repeat(2, 1), is_nih.repeat(2)
            inputs = spec.normalise(augment(pixels, theta, config, generator)).contiguous(memory_format=torch.channels_last)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, config)
            network.train()
            with _autocast(device), captured_output(_unwrap(network).layer4) as features:
                logits = network(inputs)
            classification = masked_bce(logits, targets, pos_weight)
            outside = (_prior_loss(features[-1], network, theta, prior, targets, logits, is_nih)
                       if config.attention_prior > 0 else torch.zeros((), device=device))
            absent = (evidence_on_negatives(features[-1], _unwrap(network).fc, targets)
                      if config.negative_evidence > 0 else torch.zeros((), device=device))
            unmoved = torch.zeros((), device=device)
            if cells is not None:
                first, second = features[-1].chunk(2)
                weights = evidence_weights(logits, targets).chunk(2)[0]
                unmoved = map_equivariance(first, second, _unwrap(network).fc, cells, weights)
            loss = (classification + config.attention_prior * outside + config.negative_evidence * absent
                    + config.equivariance * unmoved)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            position += 1
            latest = np.array([float(classification.detach()), float(outside.detach()), float(absent.detach()),
                               float(unmoved.detach())])
            loss_average = latest if loss_average is None else 0.98 * loss_average + 0.02 * latest
            if rank == 0 and (step % 20 == 0 or step == config.steps):
                rate = (step - seen_at_start) * config.batch_size / (time.monotonic() - started)
                eta = (config.steps - step) * config.batch_size / max(rate, 1e-9)
                log.info("step %d/%d loss %.4f evidence outside prior %.3f evidence on negatives %.3f "
                         "maps not moving with the film %.3f lr %.2e "
                         "%.1f img/s eta %.0f min", step,
                         config.steps, *loss_average, learning_rate(step, config), rate, eta / 60)
            if rank == 0 and val_bank is not None and (step % config.validate_every == 0 or step == config.steps):
                best = _validate(network, val_bank, spec, device, step, best, config)
            if time.monotonic() - last_save > config.checkpoint_minutes * 60 or step == config.steps:
                if rank == 0:
                    _save_state(state_path, network, optimizer, step, best)
                last_save = time.monotonic()
    if distributed:
        # DDP syncs buffers (BatchNorm running statistics) from rank 0 at the start of each
        # forward pass, so after the last step each rank holds its own: take rank 0's.
        for buffer in _unwrap(network).buffers():
            dist.broadcast(buffer, src=0)
    print(f"rank {rank} final weights digest {weights_digest(network)}", flush=True)
    card = None
    if rank == 0:
        card = _write_card(config, command, best, step, time.monotonic() - started, train_bank)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return card


def _prior_loss(features, network, theta, prior, targets, logits, is_nih) -> torch.Tensor:
    """Evidence outside the anatomical prior (warped like the image), on NIH images only.

    prior: (1 or 14, S, S); labels weighted by evidence_weights. Pediatric films
    are framed differently (arms, abdomen), so the adult prior is not applied
    to them.
    """
    regions, size = prior.shape[0], prior.shape[-1]
    inside = warp(prior.unsqueeze(0).expand(len(theta), -1, -1, -1).reshape(-1, size, size),
                  theta.repeat_interleave(regions, dim=0), size)
    inside = F.adaptive_avg_pool2d(inside.unsqueeze(1), features.shape[-2:]).reshape(len(theta), regions, *features.shape[-2:])
    weights = evidence_weights(logits, targets) * is_nih.float().unsqueeze(1)
    return evidence_outside(features, _unwrap(network).fc, inside, weights)


def _validate(network, val_bank, spec, device, step, best, config) -> dict:
    started = time.monotonic()
    probabilities = predict(_unwrap(network), val_bank, spec, device)
    report = validation_report(probabilities, val_bank)
    log.info("validation at step %d: score %.4f (%.0f s) %s", step, report["score"], time.monotonic() - started,
             json.dumps(report["per_source"]))
    if not math.isnan(report["score"]) and report["score"] > best["score"]:
        best = {"score": report["score"], "step": step, "report": report,
                "thresholds": val_thresholds(probabilities, val_bank)}
        save_checkpoint(_unwrap(network), {}, config.work_dir / "best.json")
        log.info("new best checkpoint at step %d", step)
    return best


def _save_state(path: Path, network, optimizer, step: int, best: dict) -> None:
    temporary = path.with_suffix(".tmp")
    torch.save({"network": _unwrap(network).state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "best": json.dumps(best)}, temporary)
    temporary.replace(path)
    log.info("saved training state at step %d", step)


def _write_card(config: TrainConfig, command: str, best: dict, step: int, seconds: float, bank: ImageBank) -> dict:
    """The model card for the checkpoint that scored best on validation data."""
    best_card = config.work_dir / "best.json"
    if not best_card.exists():
        raise SystemExit("No validation data, so no checkpoint was selected; give validation data.")
    network = load_model(best_card, device="cpu").network
    card = {
        "model_version": config.model_version,
        "input": InputSpec(size=config.image_size).as_dict(),
        "training": {
            "command": command,
            "data": _count_sources(bank.sources),
            "steps": step,
            "selected_step": best.get("step"),
            "batch_size": config.batch_size,
            "seed": config.seed,
            "wall_clock_s_this_process": round(seconds),
            "config": json.loads(json.dumps(asdict(config), default=str)),
            "initialisation": _initialisation(config),
        },
        "data_sources": {source: DATA_SOURCES[source] for source in _count_sources(bank.sources) if source in DATA_SOURCES},
        "limitations": LIMITATIONS,
        "validation_during_training": best.get("report", {}),
        "thresholds": best.get("thresholds", {label: 0.5 for label in PATHOLOGIES}),
    }
    return save_checkpoint(network, card, config.out)


def _initialisation(config: TrainConfig) -> str | dict:
    """Random, or the starting model's version, weights digest and the command that trained it."""
    if config.init_from is None:
        return "random (no pretrained weights)"
    start = read_card(config.init_from)
    return {"model_version": start.get("model_version"), "weights_sha256": start.get("weights_sha256"),
            "training_command": start.get("training", {}).get("command"),
            "initialisation": start.get("training", {}).get("initialisation")}


def _count_sources(sources: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for source in sources:
        counts[source] = counts.get(source, 0) + 1
    return counts


def _setup_logging(path: Path | None, rank: int) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if path is not None:
        handlers.append(logging.FileHandler(path))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, handlers=handlers, force=True,
                        format="%(asctime)s %(message)s")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="model card to write (weights go beside it)")
    parser.add_argument("--work-dir", type=Path, required=True, help="training state, log, intermediate checkpoints")
    parser.add_argument("--nih", type=Path, help="NIH folder with labels.csv (split column) and images/")
    parser.add_argument("--pediatric", type=Path, help="pediatric pneumonia folder with labels.csv and images/")
    parser.add_argument("--csv", nargs=2, action="append", type=Path, default=[], metavar=("LABELS_CSV", "IMAGES_DIR"),
                        help="extra training data: a CSV of image + pathology columns and its image folder")
    parser.add_argument("--val-csv", nargs=2, action="append", type=Path, default=[], metavar=("LABELS_CSV", "IMAGES_DIR"))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--nih-share", type=float, default=0.5)
    parser.add_argument("--zoom", type=float, nargs=2, default=(1.0, 1.3), metavar=("MIN", "MAX"))
    parser.add_argument("--rotate-deg", type=float, default=8.0)
    parser.add_argument("--shift", type=float, default=0.08)
    parser.add_argument("--attention-prior", type=float, default=0.0,
                        help="weight of the penalty on class evidence outside its anatomical prior (NIH images); 0 = off")
    parser.add_argument("--prior-regions", choices=("thorax", "per-label"), default="thorax",
                        help="thorax: one mask for every label; per-label: lungs for lung and pleural findings, "
                             "the heart for cardiomegaly, the thorax for hernia")
    parser.add_argument("--negative-evidence", type=float, default=0.0,
                        help="weight of the penalty on a label's positive map evidence on images known not to have it; "
                             "0 = off")
    parser.add_argument("--equivariance", type=float, default=0.0,
                        help="weight of the penalty on maps that do not move with the film (each film seen twice, "
                             "the second time moved by one cell of the map; doubles the cost of a step); 0 = off")
    parser.add_argument("--init-from", type=Path, metavar="MODEL_CARD",
                        help="start from this checkpoint's weights (fine-tuning) instead of random weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validate-every", type=int, default=500)
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--device", default=None)
    parser.add_argument("--model-version", default="0.1.0")


def main(args: argparse.Namespace) -> None:
    config = TrainConfig(**{key: value for key, value in vars(args).items() if key in TrainConfig.__dataclass_fields__})
    config.zoom = tuple(config.zoom)
    config.csv = [tuple(pair) for pair in config.csv]
    config.val_csv = [tuple(pair) for pair in config.val_csv]
    run(config, "python -m xai_core train " + " ".join(shlex.quote(a) for a in sys.argv[2:]))
