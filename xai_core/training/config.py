"""What defines a training run: its data, schedule, losses and selection rule (one frozen record per run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Blocks of torchvision's ResNet-50 in input order; --freeze-through names the last one kept fixed.
BLOCKS = ("stem", "layer1", "layer2", "layer3", "layer4")


@dataclass
class TrainConfig:
    out: Path  # the model card to write; the weights go beside it
    work_dir: Path  # training state, log and intermediate checkpoints (not for git)
    nih: Path | None = None
    pediatric: Path | None = None
    rsna: Path | None = None  # RSNA Pneumonia Detection Challenge folder (bank.py says how its labels are read)
    data: list[Path] = field(default_factory=list)  # folders of labels.csv (with split) + images/, e.g. nih_boxed, jsrt
    csv: list[tuple[Path, Path]] = field(default_factory=list)  # (labels CSV, images folder), all used for training
    val_csv: list[tuple[Path, Path]] = field(default_factory=list)
    boxes: list[tuple[Path, Path]] = field(default_factory=list)  # (box CSV, images folder) for box supervision
    shares: dict[str, float] = field(default_factory=dict)  # source -> fraction of each batch; others by size
    image_size: int = 224
    batch_size: int = 32
    steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    freeze_through: str | None = None  # None: train everything; else the stem up to this block stays fixed
    zoom: tuple[float, float] = (1.0, 1.3)
    rotate_deg: float = 8.0
    shift: float = 0.08
    attention_prior: float = 0.0  # weight of the loss on class evidence outside its anatomical prior (NIH images)
    prior_regions: str = "thorax"  # "thorax": one mask for all labels; "per-label": anatomical_priors()
    box_loss: float = 0.0  # weight of the loss on a boxed label's Grad-CAM++ evidence outside its boxes
    box_contrast: float = 0.0  # weight of the loss on a boxed map's evidence in other films' boxes minus its own
    opacity_loss: float = 0.0  # weight of the training-only "Lung Opacity" output's classification loss (RSNA)
    negative_evidence: float = 0.0  # weight of the loss on a label's positive evidence on images known not to have it
    equivariance: float = 0.0  # weight of the loss on maps that do not move with the film (a second, shifted view)
    distil: float = 0.0  # weight of the loss keeping the 14 outputs near the --init-from checkpoint's (output_drift)
    cached_views: int = 0  # > 0: layer4 and the head train on this many cached views per film (feature_bank.py)
    cached_films_per_source: int = 400  # with cached_views: films without boxes cached per source (boxed: all)
    cached_crop: int = 0  # with cached_views: each step crops each view's layer3 map this many cells smaller
    simulated_nodules: int = 0  # > 0: this many host films added twice, as they are and with a simulated nodule
    pair_ranking: float = 0.0  # weight of the loss ranking each simulated copy's Nodule output above its own film's
    output_stride: int = 32  # 16: layer4 dilated, maps twice as fine (model.build_network)
    freeze_batchnorm: bool = False  # BatchNorm keeps the starting checkpoint's running statistics in every block
    localisation_weight: float = 1.0  # selection score = mean AUROC + this x the pooled pointing margin (validation.py)
    init_from: Path | None = None  # a model card whose weights start the training (fine-tuning)
    seed: int = 0
    validate_every: int = 500
    val_limit: int = 300  # at most this many validation films per source (evenly spaced), to keep validation short
    checkpoint_minutes: float = 5.0
    resume: bool = False
    device: str | None = None
    model_version: str = "0.1.0"
