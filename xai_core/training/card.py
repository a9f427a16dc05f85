"""The model card a training run writes beside the checkpoint it selected."""

from __future__ import annotations

import json
from dataclasses import asdict

from ..labels import PATHOLOGIES, SCORED_WITH
from ..card import ModelCard, read_card
from ..model import load_model, save_checkpoint
from ..preprocessing import InputSpec
from .bank import BOX_TARGETS, OPACITY, count_sources
from .config import TrainConfig

DATA_SOURCES = {
    "nih": "NIH Clinical Center ChestX-ray14 (Wang et al., CVPR 2017), a 1,402-image subset at 512 px; "
    "released without use restrictions, attribution required.",
    "pediatric": "Pediatric chest X-rays, Guangzhou Women and Children's Medical Center (Kermany et al., Cell 2018); "
    "CC BY 4.0. Only the pneumonia label is known; the other 13 are masked as unknown.",
    "rsna": "RSNA Pneumonia Detection Challenge (Shih et al., Radiology: AI 2019) opacity boxes and labels on NIH "
    "ChestX-ray14 images; 'Normal' films are negative for all 14 labels, the others unknown for the 14.",
    "nih_boxed": "NIH ChestX-ray14 images from the official box list (BBox_List_2017), with their radiologist boxes.",
    "jsrt": "JSRT database (Shiraishi et al., AJR 2000), CT-confirmed lung nodules from 14 Japanese centres; "
    "research and education use. Only Nodule and Mass are known; the other 12 labels are masked.",
}
LIMITATIONS = [
    "Research and education use only; not for diagnosis or treatment decisions.",
    "Trained from random initialisation (no pretrained weights) on the CPU for a short schedule, on a few thousand "
    "adult NIH-derived films and 4,400 pediatric films: far less data than a clinical model needs.",
    "NIH labels were mined from radiology reports by NLP and are noisy; the pediatric set is one hospital's children "
    "aged 1-5.",
    "Shortcut risk: in the NIH subset the follow-up number, AP/PA view and devices correlate with the labels; check "
    "the heatmaps and the alignment figures, which show how often attention falls in the radiologists' boxes.",
    "Read the pointing game against the average-map control (the model's mean map, the same for every film), not "
    "only against a random map, and the map resemblance (each map's correlation with that average map; near 1, "
    "the maps barely change from film to film).",
    "Each label's verdict comes from its NIH test AUROC interval; labels with fewer than 10 test positives are "
    "\"too few cases to tell\".",
    "Inputs are squashed to a square; lateral views, other body parts and non-radiographs are out of distribution.",
]
PRIORS_LIMITATION = (
    "Anatomical priors kept the training's map evidence on the lung fields (the heart for cardiomegaly): a map there "
    "shows where the model was allowed to look, not that it found the lesion."
)


def limitations(config: TrainConfig) -> list[str]:
    """The card's limitations: the fixed ones, and the anatomical priors' where the run used them."""
    return [*LIMITATIONS, *([PRIORS_LIMITATION] if config.attention_prior > 0 else [])]


def box_supervision(config: TrainConfig, boxes: int) -> dict:
    """What the box loss was, where it acted and why, in words the card keeps."""
    return {
        "boxes_in_training": boxes,
        "box_loss_weight": config.box_loss,
        "loss": "1 - the share of the boxed label's Grad-CAM++ map (closed form on the last block's features, in the "
                "training graph: the map the viewer draws) that lies inside the film's boxes of that label, the boxes "
                "warped with the film's augmentation and averaged over the map's cells; a map with no evidence scores 1. "
                "Films without boxes add nothing.",
        "contrast_weight": config.box_contrast,
        "contrast": ("the share of the boxed label's map evidence inside the other films' boxes of the batch minus the "
                     "share inside its own film's boxes, in [-1, 1], added with weight "
                     f"{config.box_contrast}: evidence where boxes usually are gains nothing, so the loss teaches this "
                     "film's finding rather than the model's average map" if config.box_contrast > 0 else "off"),
        "balance": "the loss is a fraction in [0, 1], added to the classification loss (binary cross-entropy over known "
                   f"labels) with weight {config.box_loss}; it moves where a map's evidence lies, never whether a label "
                   "is present.",
        "rsna_lung_opacity": f"'{OPACITY}' is not one of the 14 labels: "
                             + (f"it was learnt by a training-only output on the shared pooled features (weight "
                                f"{config.opacity_loss}, " if config.opacity_loss > 0 else
                                "no output learnt whether a film has one (opacity loss off); a training-only output on "
                                "the shared pooled features carried its map (")
                             + "started from the Pneumonia row, not shipped). Its boxes supervised that output's map "
                             "and the maps of "
                             f"{', '.join(t for t in BOX_TARGETS[OPACITY] if t != OPACITY)} (RSNA's opacities are those "
                             "suspicious for pneumonia, so any pneumonia evidence on such a film belongs in them). "
                             "'Normal' films were negatives for all 14 labels; the others unknown for the 14.",
        "simulated_nodules": (f"{config.simulated_nodules} adult training films known to have neither a nodule nor "
                              "a mass, each added twice: as it is and with one simulated nodule (8-30 mm, anywhere in "
                              "the lung fields) whose box supervised the Nodule map and whose label made Nodule "
                              "positive (training/simulated_nodules.py)"
                              + (f"; each pair in one batch, the copy's Nodule logit ranked above its film's "
                                 f"(softplus of the gap, weight {config.pair_ranking})" if config.pair_ranking > 0
                                 else "") if config.simulated_nodules > 0 else "none"),
        "frozen_through": config.freeze_through,
        "outputs_kept_near_start": (f"weight {config.distil}: the binary KL divergence of the 14 outputs from the starting "
                                    "checkpoint's on the same augmented films, so that the location losses move the "
                                    "maps rather than the predictions" if config.distil > 0 else "no"),
        "batchnorm_statistics": "kept from the starting checkpoint" if config.freeze_batchnorm else "updated by training",
        "augmentation": (f"{config.cached_views} fixed augmented views per film, their layer3 features computed once "
                         "(every boxed film, up to "
                         f"{config.cached_films_per_source} others per source); layer4 and the head trained on them"
                         + (f", each step on a random crop of each view's layer3 map {config.cached_crop} cell"
                            f"{'s' if config.cached_crop > 1 else ''} (16 px each) smaller, its boxes and prior moved "
                            "with it" if config.cached_crop > 0 else "")
                         if config.cached_views > 0 else "a new augmentation of every film at every step"),
    }


def selection_rule(config: TrainConfig) -> str:
    scored = ", ".join(f"'{finding}' boxes with the {label} map" for finding, label in SCORED_WITH.items())
    return (f"Checkpoint with the highest validation score = mean AUROC over (source, label) pairs with at least 5 "
            f"validation positives (RSNA's opacity through the Pneumonia output) + {config.localisation_weight} x the "
            "pooled margin over every boxed validation source's boxes (per source, pointing of the model's maps - "
            f"pointing of its own average map over that source's films, weighted by the source's boxes); {scored}. Written before any test figure was computed.")


def write_card(config: TrainConfig, command: str, best: dict, step: int, seconds: float, sources: list[str],
               boxes: int) -> ModelCard:
    """The model card for the checkpoint that scored best on validation data."""
    best_card = config.work_dir / "best.json"
    if not best_card.exists():
        raise SystemExit("No validation data, so no checkpoint was selected; give validation data.")
    network = load_model(best_card, device="cpu").network
    counts = count_sources(sources)
    card = {
        "model_version": config.model_version,
        "input": InputSpec(size=config.image_size).as_dict(),
        "training": {
            "command": command,
            "data": counts,
            "steps": step,
            "selected_step": best.get("step"),
            "batch_size": config.batch_size,
            "seed": config.seed,
            "wall_clock_s_this_process": round(seconds),
            "config": json.loads(json.dumps(asdict(config), default=str)),
            "initialisation": _initialisation(config),
            "selection_rule": selection_rule(config),
            "box_supervision": box_supervision(config, boxes),
        },
        "data_sources": {source: DATA_SOURCES[source] for source in counts if source in DATA_SOURCES},
        "limitations": limitations(config),
        "validation_during_training": best.get("report", {}),
        "thresholds": best.get("thresholds", {label: 0.5 for label in PATHOLOGIES}),
    }
    return save_checkpoint(network, card, config.out)


def _initialisation(config: TrainConfig) -> str | dict:
    """Random, or the starting model's version, weights digest and the command that trained it."""
    if config.init_from is None:
        return "random (no pretrained weights)"
    start = read_card(config.init_from)
    return {"model_version": start.model_version, "weights_sha256": start.weights_sha256,
            "training_command": start.training.get("command"), "initialisation": start.training.get("initialisation")}
