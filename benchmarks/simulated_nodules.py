"""Does a checkpoint find simulated nodules on films it was not trained on?

`python benchmarks/simulated_nodules.py --nih ../shared/data/nih --weights CARD [CARD ...]`

Training with `--simulated-nodules` shows the model nodules made by `training/simulated_nodules.py`. This asks
whether what it learnt holds on other films: every NIH `val` film known to have neither a nodule nor a mass
gets one simulated nodule (a seed no training run uses), and each checkpoint, through the public `explain`,
scores the plain film and its nodule copy. It prints the Nodule output's AUROC between the plain films and
their copies, the share of pairs whose copy scores higher, and the Nodule map's pointing game on the nodule's
box beside a random point's (the box's share of the film). A checkpoint that scores well here but not on
JSRT's real nodules has learnt the simulation, not nodules.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xai_core import explain, load_model  # noqa: E402
from xai_core.alignment import Box, pointing_game  # noqa: E402
from xai_core.data import read_nih  # noqa: E402
from xai_core.stats import auroc  # noqa: E402
from xai_core.training.bank import ImageBank  # noqa: E402
from xai_core.training.simulated_nodules import hosts, with_simulated_nodules  # noqa: E402

SIZE = 320


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--nih", type=Path, required=True, help="the NIH folder (its val split is used)")
    parser.add_argument("--weights", type=Path, nargs="+", required=True, metavar="CARD")
    parser.add_argument("--seed", type=int, default=99)
    args = parser.parse_args()
    bank = ImageBank.load(read_nih(args.nih, ["val"]), SIZE, "validation")
    # a few hosts have no aerated lung where a nodule fits: ask for fewer than all
    count = len(hosts(bank)) * 9 // 10
    films = with_simulated_nodules(bank, count, args.seed)
    first, boxes = len(bank.sources), films.boxes[len(bank.boxes):]
    print(f"{count} NIH val films, each plain and with one simulated nodule (seed {args.seed}), at {SIZE} px")
    for card in args.weights:
        model = load_model(card, device="cpu")
        nodule = model.labels.index("Nodule")
        scores, hits, areas = np.zeros((count, 2)), [], []
        for pair in range(count):
            for copy in (0, 1):
                result = explain(model, films.pixels[first + 2 * pair + copy].numpy().astype(np.float32) / 255)
                scores[pair, copy] = result.probabilities[nodule]
            x0, y0, x1, y1 = (float(value) * SIZE for value in boxes[pair, 2:])
            hits.append(pointing_game(result.normalized_map("Nodule"), Box(x0, y0, x1 - x0, y1 - y0)))
            areas.append((x1 - x0) * (y1 - y0) / SIZE**2)
        area_under = auroc(np.r_[np.zeros(count), np.ones(count)], np.r_[scores[:, 0], scores[:, 1]])
        print(f"{card}: Nodule AUROC plain vs simulated {area_under:.3f}; copy scored higher in "
              f"{np.mean(scores[:, 1] > scores[:, 0]):.3f} of pairs; Nodule map pointing {np.mean(hits):.3f} "
              f"(random point {np.mean(areas):.3f})", flush=True)


if __name__ == "__main__":
    main()
