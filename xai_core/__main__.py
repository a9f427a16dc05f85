"""Command line: `python -m xai_core explain | evaluate | operating-points | train | db | feedback | pacs`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .training import cli as training
from .errors import XRayError
from .labels import PATHOLOGIES, require_label
from .model import default_card

if TYPE_CHECKING:
    from .explanation import Explanation
    from .imaging import XRay
    from .model import XRayModel


def _explain(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from .display import HEATMAP, OUTLINE, SALIENCY, explanation_overlay
    from .explanation import explain, saliency
    from .findings import findings
    from .imaging import read_xray
    from .methods import method_named
    from .model import load_model
    from .ood import Level
    from .overlay import saliency_for_display, to_png_bytes
    from .report import explanation_record, findings_report

    if not (args.out or args.figure or args.gif):
        raise XRayError("Say where the results go: --out DIR, --figure OUT.png or --gif OUT.gif.")
    if (args.figure or args.gif) and len(args.images) != 1:
        raise XRayError("--figure and --gif each name one file: give one image.")
    method_named(args.method)  # an unknown method is refused before the model loads
    model = load_model(args.weights, device=args.device)
    labels = [require_label(label) for label in args.labels] if args.labels else list(PATHOLOGIES)
    if args.out:
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
        if explanation.ood is not None and explanation.ood.level is not Level.FRONTAL_CHEST:
            tqdm.write(f"{image.name}: {explanation.ood.headline} {'; '.join(explanation.ood.reasons)}".rstrip())
        tqdm.write(f"{image.name}\n{findings_report(findings(explanation, model.card, args.flag_at))}")
        if args.figure or args.gif:
            _figures_out(args, model, xray, explanation, labels)
        if args.out:
            settings = {"colormap": args.colormap, "opacity": args.opacity, "outline_threshold": args.threshold,
                        "saliency": args.saliency, "labels": labels}
            record = explanation_record(model, xray, explanation, settings, args.flag_at)
            (args.out / f"{image.stem}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            layers = (HEATMAP, OUTLINE, SALIENCY) if args.saliency else (HEATMAP, OUTLINE)
            for label in labels:
                gradients = saliency_for_display(saliency(model, xray, label)) if args.saliency else None
                overlay = explanation_overlay(xray.pixels, explanation, label, layers, saliency=gradients,
                                              opacity=args.opacity, colormap=args.colormap, threshold=args.threshold)
                png = to_png_bytes(overlay, text_metadata={"model_version": model.version, "label": label})
                (args.out / f"{image.stem}_{label}.png").write_bytes(png)
        if args.dicom_out or args.stow:
            try:
                _dicom_results_out(args, model, image, xray, explanation, labels)
            except XRayError as error:
                tqdm.write(f"{image.name}: {error}")
                failures += 1
    if failures:
        raise SystemExit(f"{failures} of {len(args.images)} images could not be read or their results not written.")


def _figures_out(
    args: argparse.Namespace, model: XRayModel, xray: XRay, explanation: Explanation, labels: list[str]
) -> None:
    """The --method map of the most probable of `labels` beside the radiograph (--figure) and alternating with it
    (--gif), at the page's display size, with the caption burned in; a progress bar while a slow method runs."""
    from tqdm import tqdm

    from .figures import MethodFigure, figure_caption
    from .methods import attribute, method_named, planned_forward_passes
    from .overlay import display_shape, resize_grey

    method = method_named(args.method)
    label = max(labels, key=explanation.probability)
    if method.one_pass:
        attribution = attribute(model, xray, label, method.name)
    else:
        with tqdm(total=planned_forward_passes(model, xray, label, method.name), unit="image",
                  desc=f"{method.title}, {label}") as bar:
            attribution = attribute(model, xray, label, method.name, progress=lambda done: bar.update(done - bar.n))
            bar.update(bar.total - bar.n)
    shape = display_shape(xray.pixels.shape)
    grey, heatmap = resize_grey(xray.pixels, shape), attribution.normalized_map(label, shape)
    caption = figure_caption([method.title], label, explanation.probability(label), model.version)
    figure = MethodFigure(grey, [(method.title, heatmap)], caption, opacity=args.opacity, colormap=args.colormap)
    if args.figure:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        args.figure.write_bytes(figure.png())
    if args.gif:
        args.gif.parent.mkdir(parents=True, exist_ok=True)
        args.gif.write_bytes(figure.gif())


def _dicom_results_out(
    args: argparse.Namespace, model: XRayModel, image: Path, xray: XRay, explanation: Explanation, labels: list[str]
) -> None:
    """Secondary Capture of the most probable label with the --sc-layers overlay, and the SR of `labels`, both against
    the --flag-at operating point: to --dicom-out, --stow."""
    from .dicom_out import SALIENCY, BurnedOverlay, dicom_results, write_results
    from .dicom_source import source_header
    from .explanation import saliency
    from .pacs import Pacs, PacsSettings

    label = max(labels, key=explanation.probability)
    layers = tuple(layer for layer in args.sc_layers if layer != "none")
    overlay = BurnedOverlay(layers=layers, opacity=args.opacity, outline_threshold=args.threshold,
                            colormap=args.colormap,
                            saliency=saliency(model, xray, label) if SALIENCY in layers else None)
    results = dicom_results(source_header(image), xray, explanation, model, label=label, labels=tuple(labels),
                            overlay=overlay, point=args.flag_at)
    if args.dicom_out:
        write_results(results, args.dicom_out, image.stem)
    if args.stow:
        print(Pacs(PacsSettings.from_environment(url=args.stow)).store(results.datasets()).describe())


def _evaluate(args: argparse.Namespace) -> None:
    from .evaluate import evaluate_dataset, format_table, record_in_card

    if args.methods and args.boxes is None:
        raise XRayError("--methods compares the maps on radiologist boxes: give --boxes too.")
    report = evaluate_dataset(
        images=args.images, labels_csv=args.labels, boxes_csv=args.boxes, card_path=args.weights,
        split=args.split, device=args.device, outline_threshold=args.threshold, seed=args.seed,
    )
    if args.methods:
        report["methods"] = _compare_methods(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(format_table(report))
    if args.record_in_card:
        card_path = args.weights or default_card()
        record_in_card(card_path, args.record_in_card, report)
        print(f"recorded as '{args.record_in_card}' in {card_path}")


def _compare_methods(args: argparse.Namespace) -> dict:
    from .method_evaluation import compare_methods, format_comparison
    from .model import load_model

    model = load_model(args.weights, device=args.device)
    comparison = compare_methods(model, args.methods, images=args.images, boxes_csv=args.boxes,
                                 outline_threshold=args.threshold, seed=args.seed, curve_steps=args.curve_steps)
    print(format_comparison(comparison) + "\n")
    return comparison


def _fit_ood(args: argparse.Namespace) -> None:
    from .card import out_of_distribution_json
    from .fitting import fit_ood

    card_path = args.weights or default_card()
    section = fit_ood(card_path, args.data, limit=args.limit)
    print(json.dumps({key: value for key, value in out_of_distribution_json(section).items()
                      if not key.startswith(("layout_", "feature_", "weights"))}, indent=2))
    print(f"recorded in {card_path}")


def _check_ood(args: argparse.Namespace) -> None:
    from .card import read_card
    from .ood_evaluation import format_levels, levels_by_source

    card = read_card(args.weights or default_card())
    if card.out_of_distribution is None:
        raise XRayError("This model card has no out-of-distribution statistics: run python -m xai_core fit-ood first.")
    rows = levels_by_source(card.out_of_distribution, args.data)
    print(format_levels(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


def _calibrate(args: argparse.Namespace) -> None:
    from .data import read_label_csv
    from .fitting import fit_calibration
    from .card import update_card
    from .model import load_model

    if args.split == "test":
        raise SystemExit("Calibrating on the test split would flatter its figures: use the validation split.")
    card_path = args.weights or default_card()
    cases = read_label_csv(args.labels, args.images, splits=[args.split])
    if not cases:
        raise SystemExit(f"No images of split '{args.split}' in {args.labels}.")
    section = fit_calibration(load_model(card_path, device=args.device), cases)
    update_card(card_path, calibration={**section, "data": f"{Path(args.labels).name}, split {args.split}"})
    print(json.dumps(section, indent=2))


def _operating_points(args: argparse.Namespace) -> None:
    from .card import read_card, update_card
    from .data import read_nih
    from .model import load_model
    from .operating_points import format_points, operating_points_section, predict

    card_path = args.weights or default_card()
    model = load_model(card_path, device=args.device)
    validation, test = read_nih(args.data, ["val"]), read_nih(args.data, ["test"])
    if not validation or not test:
        raise SystemExit(f"{args.data / 'labels.csv'} needs films of both splits 'val' (to choose) and 'test' (to report).")
    section = operating_points_section(
        model.card, predict(model, validation, "validation"), predict(model, test, "test"),
        chosen_on=f"{args.data.name} labels.csv, split val", reported_on=f"{args.data.name} labels.csv, split test",
        seed=args.seed)
    update_card(card_path, operating_points=section)
    print(format_points(read_card(card_path)))
    print(f"written to {card_path}")


def _pacs(args: argparse.Namespace) -> None:
    """Search a DICOMweb PACS for studies, or list a study's (or one series') instances; an incomplete list says so."""
    from datetime import date

    from .pacs import Pacs, PacsSettings

    settings = PacsSettings.from_environment(url=args.url)
    if settings is None:
        raise XRayError("Name the PACS: --url, or $XAI_DICOMWEB_URL.")
    pacs = Pacs(settings)
    if args.action == "studies":
        try:
            first, last = (date.fromisoformat(value) if value else None for value in (args.date_from, args.date_to))
        except ValueError:
            raise XRayError("Write study dates as YYYY-MM-DD, e.g. 2004-08-26.") from None
        if not (args.accession or args.patient_id or first or last):
            raise XRayError("Give --accession, --patient-id or a date range (--from, --to).")
        for study in pacs.search_studies(accession_number=args.accession, patient_id=args.patient_id,
                                         date_from=first, date_to=last):
            print(f"{study.study_uid}  {study.line()}")
        return
    if not args.study:
        raise XRayError("pacs instances needs --study STUDY_UID.")
    listing = pacs.list_instances(args.study, args.series, limit=args.limit)
    for item in listing.instances:
        print(f"{item.series_uid} {item.sop_uid}  {item.line()}  {item.kind}")
    if not listing.complete:
        print(listing.notice())
        if args.series is None:
            for series in pacs.list_series(args.study):
                print(f"  --series {series.series_uid}  {series.line()}")


def _db_upgrade(args: argparse.Namespace) -> None:
    from .store import create_store_engine, current_revision, describe, upgrade

    engine = create_store_engine()
    upgrade(engine)
    print(f"{describe(engine)} is at revision {current_revision(engine)}")


def _feedback(args: argparse.Namespace) -> None:
    import getpass

    from .store import export_feedback, feedback_stats, format_stats, open_store, verify_audit

    store = open_store()
    if args.action == "verify-audit":
        check = verify_audit(store)
        if not check.intact:
            raise SystemExit(f"audit trail broken at row {check.broken_at}: {check.problem} "
                             f"({check.rows} rows before it verify)")
        print(f"audit trail intact: {check.rows} rows, head hash {check.head_hash}")
    elif args.action == "export":
        if args.out is None:
            raise SystemExit("feedback export needs --out DIR")
        summary = export_feedback(store, args.out, actor=f"cli:{getpass.getuser()}")
        print(f"wrote {summary.images} images, {summary.boxes} boxes from {summary.feedback} feedback rows to {args.out}")
    else:
        print(format_stats(feedback_stats(store)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m xai_core", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    explain = commands.add_parser("explain", help="probabilities and overlays for images")
    explain.add_argument("images", nargs="+", type=Path)
    explain.add_argument("--out", type=Path, help="folder for an overlay PNG per label and a JSON per image")
    explain.add_argument("--weights", type=Path, help="model card (.json) of the checkpoint (default: $XAI_MODEL_CARD, else the shipped one)")
    explain.add_argument("--labels", nargs="+", help="only these pathologies (default: all 14)")
    explain.add_argument("--saliency", action="store_true", help="add gradient saliency to each overlay")
    explain.add_argument("--colormap", default="inferno")
    explain.add_argument("--opacity", type=float, default=0.5)
    explain.add_argument("--threshold", type=float, default=0.5, help="outline threshold on the normalised map")
    explain.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: $XAI_DEVICE, else CUDA if present)")
    explain.add_argument("--dicom-out", type=Path, help="also write <image>_sc.dcm (Secondary Capture) and <image>_sr.dcm (TID 1500 SR) here")
    explain.add_argument("--stow", metavar="URL", help="also store both in this DICOMweb PACS (credentials from $XAI_DICOMWEB_USER/_PASSWORD/_TOKEN)")
    explain.add_argument("--sc-layers", nargs="+", choices=["heatmap", "saliency", "outline", "none"],
                         default=["heatmap"],
                         help="what the Secondary Capture burns in over the film, as the page's layers (default: the "
                              "page's, the heatmap alone); with --opacity, --threshold and --colormap")
    explain.add_argument("--flag-at", choices=["high_specificity", "high_sensitivity"], default="high_specificity",
                         help="the model card's operating point the printed findings, the JSON, the SC and SR flag "
                              "findings against (default: the page's)")
    explain.add_argument("--figure", type=Path, metavar="OUT.png",
                         help="one image: the radiograph beside its --method map for the most probable of --labels, "
                              "captioned (method, pathology, probability, model version, research use only)")
    explain.add_argument("--gif", type=Path, metavar="OUT.gif",
                         help="one image: an animated GIF alternating the radiograph and that map, captioned")
    explain.add_argument("--method", default="grad_cam_plus_plus",
                         help="the explanation method of --figure and --gif (xai_core.methods: grad_cam_plus_plus, "
                              "grad_cam, cam, saliency, smoothgrad, integrated_gradients, gradient_shap, occlusion, "
                              "kernel_shap, guided_grad_cam; default grad_cam_plus_plus)")
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
    evaluate.add_argument("--methods", nargs="+", metavar="METHOD",
                          help="also compare these explanation methods on the boxes (xai_core.methods: "
                               "grad_cam_plus_plus, grad_cam, cam, saliency, smoothgrad, integrated_gradients, "
                               "gradient_shap, occlusion, kernel_shap, guided_grad_cam)")
    evaluate.add_argument("--curve-steps", type=int, default=10, help="points on each deletion / insertion curve")
    evaluate.set_defaults(run=_evaluate)

    fit_ood = commands.add_parser("fit-ood", help="fit the two-level out-of-distribution warning into the card")
    fit_ood.add_argument("--data", type=Path, required=True,
                         help="the data folder (nih, nih_boxed, rsna adults and pediatric_pneumonia: train to fit, "
                              "val for the mild threshold; never test)")
    fit_ood.add_argument("--limit", type=int, help="at most this many films per folder and split (a quick try)")
    fit_ood.add_argument("--weights", type=Path, help="model card to record it in (default: the shipped one)")
    fit_ood.set_defaults(run=_fit_ood)

    check_ood = commands.add_parser("check-ood", help="the warning's levels per source: chest films, non-chest images")
    check_ood.add_argument("--data", type=Path, required=True, help="the data folder (../shared/data)")
    check_ood.add_argument("--weights", type=Path, help="model card (default: $XAI_MODEL_CARD, else the shipped one)")
    check_ood.add_argument("--out", type=Path, help="also write the table as JSON here")
    check_ood.set_defaults(run=_check_ood)

    calibrate = commands.add_parser("calibrate", help="fit per-label Platt scaling on validation films into the card")
    calibrate.add_argument("--images", type=Path, required=True)
    calibrate.add_argument("--labels", type=Path, required=True, help="CSV of image + pathology columns (and split)")
    calibrate.add_argument("--split", default="val", help="rows of this split only (never the test split)")
    calibrate.add_argument("--weights", type=Path, help="model card to add the calibration to (default: the shipped one)")
    calibrate.add_argument("--device", default=None)
    calibrate.set_defaults(run=_calibrate)

    points = commands.add_parser("operating-points", help="choose high-sensitivity and high-specificity points on "
                                 "NIH val, report them and a verdict per label on NIH test, into the card")
    points.add_argument("--data", type=Path, required=True, help="NIH folder: labels.csv (split val and test), images/")
    points.add_argument("--weights", type=Path, help="model card to write the points into (default: the shipped one)")
    points.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    points.add_argument("--device", default=None)
    points.set_defaults(run=_operating_points)

    train = commands.add_parser("train", help="fine-tune the ResNet-50 (single process or torchrun)")
    training.add_arguments(train)
    train.set_defaults(run=training.main)

    database = commands.add_parser("db", help="the feedback database ($XAI_DATABASE_URL, else a SQLite file)")
    database.add_argument("action", choices=["upgrade"], help="run its migrations to the newest revision")
    database.set_defaults(run=_db_upgrade)

    feedback = commands.add_parser("feedback", help="reader feedback: check the audit trail, export, statistics")
    feedback.add_argument("action", choices=["verify-audit", "export", "stats"])
    feedback.add_argument("--out", type=Path, help="export: folder for images/, labels.csv and boxes.csv")
    feedback.set_defaults(run=_feedback)

    pacs = commands.add_parser("pacs", help="search a DICOMweb PACS ($XAI_DICOMWEB_URL) for studies, list instances")
    pacs.add_argument("action", choices=["studies", "instances"])
    pacs.add_argument("--url", help="the PACS's DICOMweb root (default: $XAI_DICOMWEB_URL; credentials from "
                                    "$XAI_DICOMWEB_USER/_PASSWORD/_TOKEN)")
    pacs.add_argument("--accession", help="studies: by accession number")
    pacs.add_argument("--patient-id", help="studies: by patient ID")
    pacs.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="studies: from this study date")
    pacs.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="studies: up to this study date")
    pacs.add_argument("--study", metavar="STUDY_UID", help="instances: of this study")
    pacs.add_argument("--series", metavar="SERIES_UID", help="instances: of this series only")
    pacs.add_argument("--limit", type=int, default=1000, help="instances: list at most this many (default 1000)")
    pacs.set_defaults(run=_pacs)
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
