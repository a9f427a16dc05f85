"""`python -m xai_core train`: the command line of a training run."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..card import OUTPUT_STRIDES
from .config import BLOCKS, TrainConfig
from .loop import run


def _share(text: str) -> tuple[str, float]:
    source, _, fraction = text.partition("=")
    try:
        return source, float(fraction)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected SOURCE=FRACTION, e.g. nih=0.3, got '{text}'") from error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="model card to write (weights go beside it)")
    parser.add_argument("--work-dir", type=Path, required=True, help="training state, log, intermediate checkpoints")
    parser.add_argument("--nih", type=Path, help="NIH folder with labels.csv (split column) and images/")
    parser.add_argument("--pediatric", type=Path, help="pediatric pneumonia folder with labels.csv and images/")
    parser.add_argument("--rsna", type=Path, help="RSNA pneumonia folder (labels.csv with class, lung_opacity, split)")
    parser.add_argument("--data", type=Path, action="append", default=[], metavar="FOLDER",
                        help="a folder of labels.csv (pathology columns, split) and images/: train rows train, "
                             "val rows validate; the folder's name is the source (e.g. nih_boxed, jsrt)")
    parser.add_argument("--csv", nargs=2, action="append", type=Path, default=[], metavar=("LABELS_CSV", "IMAGES_DIR"),
                        help="extra training data: a CSV of image + pathology columns and its image folder")
    parser.add_argument("--val-csv", nargs=2, action="append", type=Path, default=[], metavar=("LABELS_CSV", "IMAGES_DIR"))
    parser.add_argument("--boxes", nargs=2, action="append", type=Path, default=[], metavar=("BOXES_CSV", "IMAGES_DIR"),
                        help="radiologist boxes (image, finding, x, y, w, h; the format evaluate --boxes reads) on "
                             "training or validation images in IMAGES_DIR; repeatable")
    parser.add_argument("--share", type=_share, action="append", default=[], metavar="SOURCE=FRACTION",
                        dest="shares", help="fraction of each batch drawn from a source; the others by size")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--freeze-through", choices=BLOCKS, default=None,
                        help="keep the stem and the blocks up to this one fixed (train only the later blocks); "
                             "layer4: only the linear head trains, so every map is a new weighting of 0.4.0's "
                             "channel maps")
    parser.add_argument("--zoom", type=float, nargs=2, default=(1.0, 1.3), metavar=("MIN", "MAX"))
    parser.add_argument("--rotate-deg", type=float, default=8.0)
    parser.add_argument("--shift", type=float, default=0.08)
    parser.add_argument("--attention-prior", type=float, default=0.0,
                        help="weight of the penalty on class evidence outside its anatomical prior (adult films); 0 = off")
    parser.add_argument("--prior-regions", choices=("thorax", "per-label"), default="thorax",
                        help="thorax: one mask for every label; per-label: lungs for lung and pleural findings, "
                             "the heart for cardiomegaly, the thorax for hernia")
    parser.add_argument("--box-loss", type=float, default=0.0,
                        help="weight of the loss on a boxed label's Grad-CAM++ evidence outside its boxes; 0 = off")
    parser.add_argument("--box-contrast", type=float, default=0.0,
                        help="weight of the loss on a boxed label's evidence inside the other films' boxes of the "
                             "batch minus inside its own (the margin over where boxes usually are); 0 = off")
    parser.add_argument("--opacity-loss", type=float, default=0.0,
                        help="weight of the training-only RSNA 'Lung Opacity' output's classification loss; 0 = off")
    parser.add_argument("--negative-evidence", type=float, default=0.0,
                        help="weight of the penalty on a label's positive map evidence on images known not to have it; "
                             "0 = off")
    parser.add_argument("--equivariance", type=float, default=0.0,
                        help="weight of the penalty on maps that do not move with the film (each film seen twice, "
                             "the second time moved by one cell of the map; doubles the cost of a step); 0 = off")
    parser.add_argument("--distil", type=float, default=0.0,
                        help="weight of the loss keeping the 14 outputs close to the --init-from checkpoint's on the "
                             "same augmented films (binary KL), so that box losses move the maps, not the "
                             "predictions; 0 = off")
    parser.add_argument("--cached-views", type=int, default=0, metavar="N",
                        help="with --freeze-through layer3: run N augmented views of each cached film through the "
                             "frozen blocks once (saved in the work folder) and train layer4 and the head on them; "
                             "several times faster on a CPU, at the cost of fresh augmentation at every step")
    parser.add_argument("--cached-films-per-source", type=int, default=400, metavar="N",
                        help="with --cached-views: every film with a box, and up to N others of each source")
    parser.add_argument("--cached-crop", type=int, default=0, metavar="CELLS",
                        help="with --cached-views: at each step, a random crop of each view's layer3 map, CELLS cells "
                             "(16 px each) smaller in height and width: the view moved by up to CELLS x 16 px, its "
                             "boxes and priors with it, so each cached view serves (CELLS + 1)^2 placements; 0 = off")
    parser.add_argument("--simulated-nodules", type=int, default=0, metavar="N",
                        help="add N adult training films known to have no nodule or mass twice, as they are and "
                             "with one simulated lung nodule whose box supervises the Nodule map (source "
                             "simulated_nodules, for --share; simulated_nodules.py); 0 = off")
    parser.add_argument("--pair-ranking", type=float, default=0.0,
                        help="with --simulated-nodules: weight of the loss softplus(film's Nodule logit - its "
                             "copy's), each simulated pair kept in one batch, so the Nodule output learns what a "
                             "nodule adds to a film rather than 0.5 for both; 0 = off")
    parser.add_argument("--output-stride", type=int, choices=OUTPUT_STRIDES, default=32,
                        help="16: dilate layer4 instead of striding it, so every map is twice as fine (20 x 20 at "
                             "320 px) at about 4 times layer4's cost; the starting checkpoint's weights fit either")
    parser.add_argument("--freeze-batchnorm", action="store_true",
                        help="keep every BatchNorm's running statistics as the starting checkpoint has them (its "
                             "scale and shift still train): batches that mix sources do not shift them")
    parser.add_argument("--localisation-weight", type=float, default=1.0,
                        help="selection score = mean validation AUROC + this x the pointing margin over the "
                             "average map, all validation boxes pooled")
    parser.add_argument("--init-from", type=Path, metavar="MODEL_CARD",
                        help="start from this checkpoint's weights (fine-tuning) instead of random weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validate-every", type=int, default=500)
    parser.add_argument("--val-limit", type=int, default=300, help="at most this many validation films per source")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--device", default=None)
    parser.add_argument("--model-version", default="0.1.0")


def main(args: argparse.Namespace) -> None:
    config = TrainConfig(**{key: value for key, value in vars(args).items() if key in TrainConfig.__dataclass_fields__})
    config.zoom = tuple(config.zoom)
    config.csv = [tuple(pair) for pair in config.csv]
    config.val_csv = [tuple(pair) for pair in config.val_csv]
    config.boxes = [tuple(pair) for pair in config.boxes]
    config.shares = dict(args.shares)
    run(config, "python -m xai_core train " + " ".join(shlex.quote(a) for a in sys.argv[2:]))
