"""The 14 thoracic pathologies the model predicts, in the checkpoint's output order."""

from __future__ import annotations

from .errors import XRayError

PATHOLOGIES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)

# Other spellings of the same findings: NIH's box list ("Infiltrate"), CheXpert
# ("Pleural Effusion") and plain-English forms. Keys are compared case-folded
# with spaces, hyphens and underscores removed.
_ALIASES: dict[str, str] = {
    "infiltrate": "Infiltration",
    "infiltrates": "Infiltration",
    "pleuraleffusion": "Effusion",
    "effusions": "Effusion",
    "pleuralthickening": "Pleural_Thickening",
    "pneumonitis": "Pneumonia",
    "enlargedheart": "Cardiomegaly",
    "nodules": "Nodule",
    "masses": "Mass",
}


# Box findings that are not one of the 14, and the label whose map each is scored with. RSNA's "Lung Opacity"
# marks opacities suspicious for pneumonia (RSNA Pneumonia Detection Challenge): the Pneumonia map is the
# shipped map closest to it. Its labels are read apart (data.read_rsna).
SCORED_WITH: dict[str, str] = {"Lung Opacity": "Pneumonia"}


def _key(name: str) -> str:
    return "".join(ch for ch in name.casefold() if ch not in " _-")


_LOOKUP: dict[str, str] = {_key(p): p for p in PATHOLOGIES} | _ALIASES


def canonical_label(name: str) -> str | None:
    """The pathology a column or finding name stands for, or None if it is not one of the 14."""
    return _LOOKUP.get(_key(str(name)))


def require_label(name: str) -> str:
    """Like canonical_label, but a name that is not a pathology is a user error."""
    label = canonical_label(name)
    if label is None:
        raise XRayError(
            f"'{name}' is not one of the 14 pathologies this model predicts: {', '.join(PATHOLOGIES)}."
        )
    return label


def label_index(name: str) -> int:
    return PATHOLOGIES.index(require_label(name))


def display_name(label: str) -> str:
    """'Pleural_Thickening' -> 'Pleural thickening' for the page."""
    return label.replace("_", " ").capitalize()
