"""The training loop: one process, or several with `torchrun` (DDP); validation, checkpoints, resume.

The run is defined by its step count and seed: data order, augmentation and
checkpoints are reproducible, and --resume continues exactly where the last
checkpoint left off. Augmentation runs on whole batches, so the CPU spends its
time in the network, not in data loading.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..card import ModelCard
from ..explanation import captured_output, pooled_linear_cams
from ..labels import PATHOLOGIES
from ..model import _unwrap, build_network, choose_device, load_model, save_checkpoint
from ..preprocessing import InputSpec
from .attention import (
    SHIFTS, anatomical_priors, box_contrast_loss, box_loss, evidence_on_negatives, evidence_weights, map_equivariance,
    masked_bce, output_drift, positive_weights, prior_loss, shifted_by_cells, thorax_prior,
)
from .augment import augment, box_masks, random_affine
from .bank import ImageBank, count_sources, rank_order, read_training_boxes, training_cases
from .card import write_card
from .config import BLOCKS, TrainConfig
from .feature_bank import FeatureBank, cropped, last_block, load_or_build
from .simulated_nodules import pair_ranking, with_partners, with_simulated_nodules
from .validation import predict, val_thresholds, validation_report

log = logging.getLogger("xai_core.train")

# Sources whose films the adult anatomical prior does not fit: the pediatric films are framed differently
# (arms, abdomen).
PRIOR_EXEMPT = {"pediatric"}
# The losses logged as running means, in this order.
LOSS_NAMES = ("classification", "opacity", "evidence outside prior", "box evidence outside", "evidence on negatives",
              "maps not moving with the film", "outputs drifting from the start", "box evidence other films minus own",
              "simulated copy not above its film")


class TrainingNetwork(nn.Module):
    """The shipped network plus a training-only "Lung Opacity" output on the same pooled features.

    The opacity output starts as a copy of the Pneumonia row; only `network` is saved in a checkpoint.
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.opacity = nn.Linear(network.fc.in_features, 1)
        self.start_opacity_from_pneumonia()

    @torch.no_grad()
    def start_opacity_from_pneumonia(self) -> None:
        pneumonia = PATHOLOGIES.index("Pneumonia")
        self.opacity.weight.copy_(self.network.fc.weight[pneumonia : pneumonia + 1])
        self.opacity.bias.copy_(self.network.fc.bias[pneumonia : pneumonia + 1])

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (14 logits, opacity logit, the last block's features)."""
        with captured_output(self.network.layer4) as outputs:
            logits = self.network(inputs)
        features = outputs[-1]
        return logits, self.opacity(features.float().mean((2, 3))).squeeze(1), features

    def head(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights (T, K) and biases (T,) of every output: the 14, then the opacity."""
        return (torch.cat([self.network.fc.weight, self.opacity.weight]),
                torch.cat([self.network.fc.bias, self.opacity.bias]))


def frozen_modules(network: nn.Module, freeze_through: str | None) -> list[nn.Module]:
    """The stem and blocks up to freeze_through (none when it is None)."""
    if freeze_through is None:
        return []
    stem = [network.conv1, network.bn1]
    layers = [getattr(network, name) for name in BLOCKS[1 : BLOCKS.index(freeze_through) + 1]]
    return stem + layers


def autocast(device: torch.device):
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


def weights_digest(network: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(_unwrap(network).state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _validation_subset(cases: list, limit: int) -> list:
    """At most `limit` films per source, evenly spaced through each source's list (deterministic)."""
    by_source: dict[str, list] = {}
    for case in cases:
        by_source.setdefault(case.source, []).append(case)
    kept = []
    for group in by_source.values():
        step = max(1.0, len(group) / limit)
        kept += [group[int(i * step)] for i in range(min(limit, len(group)))]
    return kept


def run(config: TrainConfig, command: str) -> ModelCard | None:
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
    if config.pair_ranking > 0 and (config.simulated_nodules == 0 or config.cached_views > 0):
        raise SystemExit("--pair-ranking compares simulated nodule copies with their films on fresh views: it needs "
                         "--simulated-nodules and no --cached-views.")

    train_cases, val_cases = training_cases(config)
    findings = read_training_boxes(config.boxes)
    train_bank = ImageBank.load(train_cases, config.image_size, "training", findings)
    if config.simulated_nodules > 0:
        train_bank = with_simulated_nodules(train_bank, config.simulated_nodules, config.seed)
    val_bank = (ImageBank.load(_validation_subset(val_cases, config.val_limit), config.image_size, "validation",
                               findings) if rank == 0 else None)
    pos_weight = positive_weights(train_bank.labels).to(device)
    opacity_pos_weight = positive_weights(train_bank.opacity.unsqueeze(1)).to(device)
    spec = InputSpec(size=config.image_size)

    model = TrainingNetwork(build_network(output_stride=config.output_stride)).to(device).to(memory_format=torch.channels_last)
    prior = (anatomical_priors(config.image_size) if config.prior_regions == "per-label"
             else thorax_prior(config.image_size).unsqueeze(0)).to(device)
    state_path = config.work_dir / "state.pt"
    if config.init_from is not None and not (config.resume and state_path.exists()):
        model.network.load_state_dict(load_model(config.init_from, device="cpu").network.state_dict())
        model.start_opacity_from_pneumonia()
        log.info("initialised from %s", config.init_from)
    reference = None
    if config.distil > 0:
        if config.init_from is None:
            raise SystemExit("--distil keeps the outputs near the starting checkpoint's: give --init-from.")
        reference = load_model(config.init_from, device="cpu").network.to(device).to(memory_format=torch.channels_last)
        reference.eval().requires_grad_(False)
    frozen = frozen_modules(model.network, config.freeze_through)
    if config.opacity_loss == 0:
        frozen.append(model.opacity)  # unused: DDP requires every trained parameter to receive a gradient
    for module in frozen:
        module.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    step, best = 0, {"score": -math.inf}
    if config.resume and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        step, best = int(state["step"]), json.loads(state["best"])
        log.info("resumed from step %d (best validation score %.4f)", step, best["score"])
    network = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if distributed else model
    cached = None
    if config.cached_crop > 0 and config.cached_views == 0:
        raise SystemExit("--cached-crop crops cached views: it needs --cached-views.")
    if config.cached_views > 0:
        if config.freeze_through != "layer3" or config.equivariance > 0 or distributed:
            raise SystemExit("--cached-views trains layer4 and the head on fixed views: it needs --freeze-through "
                             "layer3, no --equivariance and one process.")
        cached = load_or_build(config.work_dir / "feature_bank.pt", model.network, reference, train_bank, config,
                               spec.normalise, device)
    sources = cached.sources(train_bank) if cached is not None else train_bank.sources

    per_rank = config.batch_size // world
    steps_per_epoch = max(1, len(sources) // config.batch_size)
    log.info("training %d images (%s, %d boxes), validating on %d (%d boxes), %d steps of %d images, %d px, "
             "frozen through %s, %d process(es) on %s", len(train_bank.sources), count_sources(train_bank.sources),
             len(train_bank.boxes), len(val_bank.sources) if val_bank else 0, len(val_bank.boxes) if val_bank else 0,
             config.steps, config.batch_size, config.image_size, config.freeze_through, world, device)
    started, last_save, seen_at_start = time.monotonic(), time.monotonic(), step
    loss_average = None
    while step < config.steps:
        epoch, position = divmod(step, steps_per_epoch)
        order = rank_order(sources, epoch, config, rank, world)
        while position < steps_per_epoch and step < config.steps:
            indices = order[position * per_rank : (position + 1) * per_rank]
            pairs = torch.empty(0, 2, dtype=torch.long)
            if config.pair_ranking > 0:
                indices, pairs = with_partners(indices, train_bank.sources)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, config)
            losses = (_cached_step(model, cached, train_bank, indices, config, step, device, prior, pos_weight,
                                   opacity_pos_weight) if cached is not None else
                      _step(network, model, reference, train_bank, indices, pairs, config, step, rank, device, spec,
                            prior, pos_weight, opacity_pos_weight))
            weights = (1.0, config.opacity_loss, config.attention_prior, config.box_loss, config.negative_evidence,
                       config.equivariance, config.distil, config.box_contrast, config.pair_ranking)
            loss = sum(weight * value for weight, value in zip(weights, losses) if weight > 0)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            position += 1
            latest = np.array([value.item() for value in losses])
            loss_average = latest if loss_average is None else 0.98 * loss_average + 0.02 * latest
            if rank == 0 and (step % 10 == 0 or step == config.steps):
                rate = (step - seen_at_start) * config.batch_size / (time.monotonic() - started)
                eta = (config.steps - step) * config.batch_size / max(rate, 1e-9)
                log.info("step %d/%d %s lr %.2e %.2f img/s eta %.0f min", step, config.steps,
                         " ".join(f"{name} {value:.3f}" for name, value in zip(LOSS_NAMES, loss_average)),
                         learning_rate(step, config), rate, eta / 60)
            if rank == 0 and val_bank is not None and (step % config.validate_every == 0 or step == config.steps):
                best = _validate(model, val_bank, spec, device, step, best, config)
            if time.monotonic() - last_save > config.checkpoint_minutes * 60 or step == config.steps:
                if rank == 0:
                    _save_state(state_path, model, optimizer, step, best)
                last_save = time.monotonic()
    if distributed:
        # DDP syncs buffers (BatchNorm running statistics) from rank 0 at the start of each
        # forward pass, so after the last step each rank holds its own: take rank 0's.
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
    print(f"rank {rank} final weights digest {weights_digest(model.network)}", flush=True)
    card = None
    if rank == 0:
        card = write_card(config, command, best, step, time.monotonic() - started, train_bank.sources, len(train_bank.boxes))
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return card


def _step(network, model: TrainingNetwork, reference: nn.Module | None, bank: ImageBank, indices: torch.Tensor,
          pairs: torch.Tensor, config: TrainConfig, step: int, rank: int, device: torch.device, spec: InputSpec,
          prior: torch.Tensor, pos_weight: torch.Tensor, opacity_pos_weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One batch's losses, in LOSS_NAMES order (zero where a loss is off); pairs: with_partners's."""
    generator = _step_generator(config, step, rank)
    pixels = bank.pixels[indices].to(device).float() / 255.0
    theta = random_affine(len(indices), config, generator)
    batch = _Batch(theta, bank.labels[indices].to(device), bank.opacity[indices].to(device),
                   _fits_prior(bank, indices, device), bank.boxes_of(indices), pairs.to(device))
    cells = None
    if config.equivariance > 0:  # each film twice: the second view moved by whole cells of the map
        cells = SHIFTS[int(torch.randint(len(SHIFTS), (1,), generator=generator))]
        theta = torch.cat([theta, shifted_by_cells(theta, cells, config.image_size // config.output_stride)])
        batch = _Batch(theta, batch.targets.repeat(2, 1), batch.opacity.repeat(2), batch.fits_prior.repeat(2),
                       batch.boxes, batch.pairs)
        pixels = pixels.repeat(2, 1, 1)
    inputs = spec.normalise(augment(pixels, theta, config, generator)).contiguous(memory_format=torch.channels_last)
    _train_mode(network, model, config)
    with autocast(device):
        logits, opacity_logit, features = network(inputs)
    reference_logits = None
    if reference is not None:
        with torch.no_grad(), autocast(device):
            reference_logits = reference(inputs)
    return _losses(model, batch, logits, opacity_logit, features, reference_logits, cells, config, prior,
                   pos_weight, opacity_pos_weight)


def _cached_step(model: TrainingNetwork, cached: FeatureBank, bank: ImageBank, views: torch.Tensor,
                 config: TrainConfig, step: int, device: torch.device, prior: torch.Tensor, pos_weight: torch.Tensor,
                 opacity_pos_weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One batch's losses from cached layer3 features (feature_bank.py): layer4 and the head run here, on a random
    crop of each view with --cached-crop."""
    films, features, theta = cached.films[views], cached.features[views], cached.theta[views]
    if config.cached_crop > 0:
        generator = _step_generator(config, step, rank=0)
        features, theta = cropped(features, theta, config.cached_crop, generator)
    batch = _Batch(theta, bank.labels[films].to(device), bank.opacity[films].to(device),
                   _fits_prior(bank, films, device), bank.boxes_of(films))
    _train_mode(model, model, config)
    with autocast(device):
        logits, features = last_block(model.network, features.to(device).float())
    opacity_logit = model.opacity(features.float().mean((2, 3))).squeeze(1)
    reference_logits = cached.reference[views].to(device) if config.distil > 0 else None
    return _losses(model, batch, logits, opacity_logit, features, reference_logits, None, config, prior,
                   pos_weight, opacity_pos_weight)


def _step_generator(config: TrainConfig, step: int, rank: int) -> torch.Generator:
    """The random draws of one step on one process (augmentation, crops): the same on a resumed run."""
    return torch.Generator().manual_seed(config.seed * 1_000_003 + step * 101 + rank)


@dataclass
class _Batch:
    """What the losses need of a batch besides the network's outputs: each film's warp, labels (NaN unknown),
    RSNA opacity, whether the adult prior fits it, its boxes (bank.ImageBank.boxes_of) and the batch positions
    of its simulated pairs (simulated_nodules.with_partners)."""

    theta: torch.Tensor
    targets: torch.Tensor
    opacity: torch.Tensor
    fits_prior: torch.Tensor
    boxes: torch.Tensor
    pairs: torch.Tensor = field(default_factory=lambda: torch.empty(0, 2, dtype=torch.long))


def _fits_prior(bank: ImageBank, films: torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.tensor([bank.sources[i] not in PRIOR_EXEMPT for i in films.tolist()], device=device)


def _train_mode(network: nn.Module, model: TrainingNetwork, config: TrainConfig) -> None:
    network.train()
    for module in frozen_modules(model.network, config.freeze_through):
        module.eval()  # frozen BatchNorm keeps its running statistics
    if config.freeze_batchnorm:
        for module in model.network.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def _losses(model: TrainingNetwork, batch: _Batch, logits: torch.Tensor, opacity_logit: torch.Tensor,
            features: torch.Tensor, reference_logits: torch.Tensor | None, cells: tuple[int, int] | None,
            config: TrainConfig, prior: torch.Tensor, pos_weight: torch.Tensor,
            opacity_pos_weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
    zero = torch.zeros((), device=logits.device)
    classification = masked_bce(logits, batch.targets, pos_weight)
    opacity_loss = (masked_bce(opacity_logit.unsqueeze(1), batch.opacity.unsqueeze(1), opacity_pos_weight)
                    if config.opacity_loss > 0 else zero)
    head_weight, _ = model.head()
    boxing = config.box_loss > 0 or config.box_contrast > 0
    cams = pooled_linear_cams(features, head_weight) if config.attention_prior > 0 or boxing else None
    masks = box_masks(batch.boxes, batch.theta, config.image_size, tuple(cams.shape[-2:])) if boxing else None
    outside = (prior_loss(cams[:, : len(PATHOLOGIES)], batch.theta, prior,
                          evidence_weights(logits, batch.targets) * batch.fits_prior.float().unsqueeze(1))
               if config.attention_prior > 0 else zero)
    boxed = box_loss(cams, batch.boxes, masks) if config.box_loss > 0 else zero
    contrast = box_contrast_loss(cams, batch.boxes, masks) if config.box_contrast > 0 else zero
    absent = (evidence_on_negatives(features, model.network.fc.weight, batch.targets)
              if config.negative_evidence > 0 else zero)
    unmoved = zero
    if cells is not None:
        first, second = features.chunk(2)
        unmoved = map_equivariance(first, second, model.network.fc.weight, cells,
                                   evidence_weights(logits, batch.targets).chunk(2)[0])
    drift = output_drift(logits, reference_logits) if reference_logits is not None else zero
    ranking = pair_ranking(logits, batch.pairs) if config.pair_ranking > 0 else zero
    return classification, opacity_loss, outside, boxed, absent, unmoved, drift, contrast, ranking


def _validate(model: TrainingNetwork, val_bank: ImageBank, spec, device, step, best, config) -> dict:
    started = time.monotonic()
    head_weight, head_bias = model.head()
    probabilities, maps = predict(model.network, head_weight.detach(), head_bias.detach(), val_bank, spec, device,
                                  autocast)
    report = validation_report(probabilities, maps, val_bank, config.localisation_weight)
    log.info("validation at step %d: score %.4f (mean AUROC %.4f, pooled pointing margin %.4f; %.0f s) "
             "localisation %s AUROC %s", step, report["score"], report["mean_auroc"], report["pooled_margin"],
             time.monotonic() - started, json.dumps(report["localisation"]), json.dumps(report["per_source"]))
    # Every candidate is kept for evaluate, with the input it was trained and validated at: a card without it
    # would be read at the default size.
    candidate = {"input": spec.as_dict()}
    save_checkpoint(model.network, candidate, config.work_dir / f"step_{step}.json")
    if not math.isnan(report["score"]) and report["score"] > best["score"]:
        best = {"score": report["score"], "step": step, "report": report,
                "thresholds": val_thresholds(probabilities[:, : len(PATHOLOGIES)], val_bank)}
        save_checkpoint(model.network, candidate, config.work_dir / "best.json")
        log.info("new best checkpoint at step %d", step)
    return best


def _save_state(path: Path, model: nn.Module, optimizer, step: int, best: dict) -> None:
    temporary = path.with_suffix(".tmp")
    torch.save({"network": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "best": json.dumps(best)}, temporary)
    temporary.replace(path)
    log.info("saved training state at step %d", step)


def _setup_logging(path: Path | None, rank: int) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if path is not None:
        handlers.append(logging.FileHandler(path))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, handlers=handlers, force=True,
                        format="%(asctime)s %(message)s")
