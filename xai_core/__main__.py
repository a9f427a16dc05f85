"""Command line: `python -m xai_core explain | evaluate | train`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import train as training
from .errors import XRayError
from .labels import PATHOLOGIES, require_label
from .model import default_card


def _explain(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from .explain import explain, saliency
    from .imaging import read_xray
    from .model import load_model
    from .overlay import render_overlay, to_png_bytes
    from .report import explanation_record

    model = load_model(args.weights, device=args.device)
    labels = [require_label(label) for label in args.labels] if args.labels else list(PATHOLOGIES)
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for image in tqdm(args.images, desc="explaining", unit="image"):
        try:
            xray = read_xray(image)
        except XRayError as error:
            tqdm.write(f"{image.name}: {error}")
            failures += 1
            continue
        explanation = explain(model, xray)
        settings = {"colormap": args.colormap, "opacity": args.opacity, "outline_threshold": args.threshold,
                    "saliency": args.saliency, "labels": labels}
        record = explanation_record(model, xray, explanation, settings)
        (args.out / f"{image.stem}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        for label in labels:
            heatmap = explanation.normalized_map(label)
            overlay = render_overlay(
                xray.pixels,
                heatmap=heatmap,
                saliency=saliency(model, xray, label) if args.saliency else None,
                outline_map=heatmap,
                opacity=args.opacity,
                colormap=args.colormap,
                threshold=args.threshold,
            )
            png = to_png_bytes(overlay, text_metadata={"model_version": model.version, "label": label})
            (args.out / f"{image.stem}_{label}.png").write_bytes(png)
    if failures:
        raise SystemExit(f"{failures} of {len(args.images)} images could not be read.")


def _evaluate(args: argparse.Namespace) -> None:
    from .evaluate import evaluate_dataset, format_table, record_in_card

    report = evaluate_dataset(
        images=args.images, labels_csv=args.labels, boxes_csv=args.boxes, card_path=args.weights,
        split=args.split, device=args.device, outline_threshold=args.threshold, seed=args.seed,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(format_table(report))
    if args.record_in_card:
        card_path = args.weights or default_card()
        record_in_card(card_path, args.record_in_card, report)
        print(f"recorded as '{args.record_in_card}' in {card_path}")


def _fit_ood(args: argparse.Namespace) -> None:
    from .data import read_nih, read_pediatric
    from .model import load_model
    from .ood import calibrate

    card_path = args.weights or default_card()
    train, val = [], []
    if args.nih:
        train += read_nih(args.nih, ["train"])
        val += read_nih(args.nih, ["val"])
    if args.pediatric:
        train += read_pediatric(args.pediatric, ["train"])[: args.pediatric_limit]
        val += read_pediatric(args.pediatric, ["val"])
    if not train or not val:
        raise SystemExit("Give --nih and/or --pediatric: training images to fit on, validation images for the threshold.")
    section = calibrate(load_model(card_path, device=args.device), card_path, train, val)
    print(json.dumps(section, indent=2))


def _calibrate(args: argparse.Namespace) -> None:
    from . import calibration
    from .data import read_label_csv
    from .model import load_model, update_card

    if args.split == "test":
        raise SystemExit("Calibrating on the test split would flatter its figures: use the validation split.")
    card_path = args.weights or default_card()
    cases = read_label_csv(args.labels, args.images, splits=[args.split])
    if not cases:
        raise SystemExit(f"No images of split '{args.split}' in {args.labels}.")
    section = calibration.fit(load_model(card_path, device=args.device), cases)
    update_card(card_path, calibration={**section, "data": f"{Path(args.labels).name}, split {args.split}"})
    print(json.dumps(section, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m xai_core", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    explain = commands.add_parser("explain", help="probabilities and overlays for images")
    explain.add_argument("images", nargs="+", type=Path)
    explain.add_argument("--out", type=Path, required=True)
    explain.add_argument("--weights", type=Path, help="model card (.json) of the checkpoint (default: $XAI_MODEL_CARD, else the shipped one)")
    explain.add_argument("--labels", nargs="+", help="only these pathologies (default: all 14)")
    explain.add_argument("--saliency", action="store_true", help="add gradient saliency to each overlay")
    explain.add_argument("--colormap", default="inferno")
    explain.add_argument("--opacity", type=float, default=0.5)
    explain.add_argument("--threshold", type=float, default=0.5, help="outline threshold on the normalised map")
    explain.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: $XAI_DEVICE, else CUDA if present)")
    explain.set_defaults(run=_explain)

    evaluate = commands.add_parser("evaluate", help="AUROC with CIs and attention-box alignment on a dataset")
    evaluate.add_argument("--images", type=Path, required=True)
    evaluate.add_argument("--labels", type=Path, required=True, help="CSV: image + one 0/1 column per pathology")
    evaluate.add_argument("--boxes", type=Path, help="CSV: image, finding, x, y, w, h")
    evaluate.add_argument("--split", help="keep only rows whose 'split' column has this value")
    evaluate.add_argument("--out", type=Path, required=True)
    evaluate.add_argument("--weights", type=Path, help="model card (.json) of the checkpoint (default: $XAI_MODEL_CARD, else the shipped one)")
    evaluate.add_argument("--threshold", type=float, default=0.5, help="attention-region threshold on the normalised map")
    evaluate.add_argument("--seed", type=int, default=0, help="bootstrap and random-control seed")
    evaluate.add_argument("--device", default=None)
    evaluate.add_argument("--record-in-card", metavar="NAME", help="also store the report in the model card under NAME")
    evaluate.set_defaults(run=_evaluate)

    fit_ood = commands.add_parser("fit-ood", help="out-of-distribution statistics of the training images' features")
    fit_ood.add_argument("--nih", type=Path, help="NIH folder (train to fit, val for the threshold)")
    fit_ood.add_argument("--pediatric", type=Path, help="pediatric folder (train to fit, val for the threshold)")
    fit_ood.add_argument("--pediatric-limit", type=int, default=1000, help="at most this many pediatric training images")
    fit_ood.add_argument("--weights", type=Path, help="model card to add the statistics to (default: the shipped one)")
    fit_ood.add_argument("--device", default=None)
    fit_ood.set_defaults(run=_fit_ood)

    calibrate = commands.add_parser("calibrate", help="fit per-label Platt scaling on validation films into the card")
    calibrate.add_argument("--images", type=Path, required=True)
    calibrate.add_argument("--labels", type=Path, required=True, help="CSV of image + pathology columns (and split)")
    calibrate.add_argument("--split", default="val", help="rows of this split only (never the test split)")
    calibrate.add_argument("--weights", type=Path, help="model card to add the calibration to (default: the shipped one)")
    calibrate.add_argument("--device", default=None)
    calibrate.set_defaults(run=_calibrate)

    train = commands.add_parser("train", help="fine-tune the ResNet-50 (single process or torchrun)")
    training.add_arguments(train)
    train.set_defaults(run=training.main)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except XRayError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
