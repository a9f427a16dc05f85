"""What a finer map buys on small findings: `python benchmarks/map_resolution.py --data ../shared/data/jsrt`.

The pointing game counts a hit when the map's maximum, after the bilinear resize to the film, lies in the
box; the maximum of such a resize sits on a feature-grid cell centre, so a box that contains no cell centre
can never be hit. For every box of a box set this prints, per map grid, that ceiling (the share of boxes
holding a cell centre) and the pointing of the checkpoint's Grad-CAM++ map for the box's label, in the same
run, beside the viewer's own map (the last block at the card's input size):
- `layer4` at the input size (what the viewer draws; the reference),
- `layer3` at the input size (a grid twice as fine; Grad-CAM++ with the gradient through `layer4`),
- `layer4` at twice the input size (a twice-as-fine grid from a larger input than the model was trained on).
Every map is Grad-CAM++ from the real gradient (explain.grad_cam_plus_plus_weights, as the engine computes
it for any head). Default: all the folder's films (JSRT's: 0.4.0 never saw them).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xai_core.alignment import Box, pointing_game  # noqa: E402
from xai_core.data import read_boxes  # noqa: E402
from xai_core.explanation import captured_output, grad_cam_plus_plus_weights, normalized_cam  # noqa: E402
from xai_core.imaging import read_xray  # noqa: E402
from xai_core.model import load_model  # noqa: E402
from xai_core.preprocessing import InputSpec  # noqa: E402


def holds_a_cell_centre(box: Box, shape: tuple[int, int], grid: int) -> bool:
    """Whether a bilinear resize of a grid x grid map to shape can put its maximum inside the box."""
    height, width = shape
    xs = (np.arange(grid) + 0.5) * width / grid
    ys = (np.arange(grid) + 0.5) * height / grid
    inside_x = (xs >= box.x) & (xs < box.x + box.w)
    inside_y = (ys >= box.y) & (ys < box.y + box.h)
    return bool(inside_x.any() and inside_y.any())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a folder with images/ and boxes.csv")
    parser.add_argument("--weights", type=Path, default=None, help="model card (default: the shipped one)")
    parser.add_argument("--split", default=None, help="only films of this split in labels.csv (default: all)")
    args = parser.parse_args()

    model = load_model(args.weights, device="cpu")
    network, size = model.network, model.input_spec.size
    findings = read_boxes(args.data / "boxes.csv")
    if args.split:
        with open(args.data / "labels.csv", newline="") as handle:
            keep = {row["image"] for row in csv.DictReader(handle) if row["split"] == args.split}
        findings = {image: boxes for image, boxes in findings.items() if image in keep}
    variants = {
        f"layer4 at {size} px (the viewer's map)": (network.layer4, size),
        f"layer3 at {size} px": (network.layer3, size),
        f"layer4 at {2 * size} px": (network.layer4, 2 * size),
    }
    hits = {name: [] for name in variants}
    ceilings = {name: [] for name in variants}
    grids: dict[str, int] = {}
    for image, image_findings in sorted(findings.items()):
        pixels = read_xray(args.data / "images" / image).pixels
        shape = pixels.shape
        for name, (layer, input_size) in variants.items():
            inputs = InputSpec(size=input_size).prepare(pixels)
            for finding in image_findings:
                grid_map = _grid_map(network, layer, inputs, model.labels.index(finding.label))
                hits[name].append(pointing_game(normalized_cam(grid_map, shape), finding.box))
                grids[name] = grid_map.shape[-1]
                ceilings[name].append(holds_a_cell_centre(finding.box, shape, grids[name]))
    boxes = len(next(iter(hits.values())))
    print(f"{boxes} boxes on {len(findings)} films of {args.data.name}, model {model.version}\n")
    print("| map | grid | boxes holding a cell centre (ceiling) | pointing | ratio to the viewer's map |")
    print("|---|---|---|---|---|")
    reference = float(np.mean(next(iter(hits.values()))))
    for name in variants:
        grid = grids[name]
        pointing = float(np.mean(hits[name]))
        ratio = f"{pointing / reference:.2f}" if reference > 0 else "n/a (reference 0)"
        print(f"| {name} | {grid} x {grid} | {np.mean(ceilings[name]):.2f} | {pointing:.3f} | {ratio} |")


def _grid_map(network: torch.nn.Module, layer: torch.nn.Module, inputs: torch.Tensor, label: int) -> np.ndarray:
    """The label's Grad-CAM++ map at the layer's own grid, from the real gradient of its logit."""
    inputs = inputs.detach().requires_grad_(True)  # load_model freezes the parameters
    with torch.enable_grad(), captured_output(layer) as outputs:
        logit = network(inputs)[0, label]
        activations = outputs[0]
        gradients = torch.autograd.grad(logit, activations)[0]
    weights = grad_cam_plus_plus_weights(activations.detach().float(), gradients.float())  # (1, K)
    return torch.einsum("k,khw->hw", weights[0], activations[0].detach().float()).clamp(min=0).numpy()


if __name__ == "__main__":
    main()
