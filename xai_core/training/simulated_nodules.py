"""Simulated lung nodules: more nodule films with exact boxes, for a model that has seen about 80 real ones.

The real nodule boxes shared with us (JSRT train, nih_boxed, ChestX-Det) number about 80, and a model fine-tuned
on them does not find JSRT's nodules (docs/model.md). Inserting synthetic lesions into films without them is an
established way to add localised examples (lesion insertion in chest radiography and CT): here each chosen
host film, an adult film known to have neither a nodule nor a mass, enters training twice, as it is and with
one simulated nodule whose box is known exactly. The pair differs only by the nodule, so the Nodule output
and map can only learn from it what a nodule adds, and the nodules lie anywhere in the lung fields, so there
is no "usual place" for the box loss to teach.

Cross-entropy on the copies alone does not teach the Nodule output to see them: the two films of a pair carry
opposite Nodule labels and look alike, so the cheapest answer is 0.5 for both (docs/model.md, "simulated nodules
are not learnt"). pair_ranking compares each copy with its own film instead, so the only way to lower it is to
respond to what the nodule adds; with_partners keeps both films of a drawn pair in the same batch.

The nodule is the projection of a solid, roughly spherical lesion: the thickness of a sphere (sqrt(1 - r^2))
with a lobulated outline and a softened edge, added to the film's brightness (dense is bright). Its size and
contrast are drawn from clinical definitions, never from a test set: 8-30 mm across (a nodule is under 30 mm)
on a film about 400 mm wide, and a peak from faint to moderate against the film's own lung-field contrast.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from ..labels import PATHOLOGIES
from .attention import anatomical_priors
from .bank import TARGETS, ImageBank

log = logging.getLogger("xai_core.train")

SOURCE = "simulated_nodules"
# What is never a host: children's films (another anatomy and another reader's labels).
_NOT_HOSTS = {"pediatric"}
_FILM_WIDTH_MM = 400.0
_DIAMETER_MM = (8.0, 30.0)
# Peak brightness added, as a fraction of the spread between the lung field's dark and the film's bright parts.
_PEAK = (0.08, 0.35)
_NODULE, _MASS = PATHOLOGIES.index("Nodule"), PATHOLOGIES.index("Mass")


def hosts(bank: ImageBank) -> list[int]:
    """Films that may receive a nodule: adult films whose labels say no nodule and no mass (not unknown)."""
    return [index for index, source in enumerate(bank.sources)
            if source not in _NOT_HOSTS and bank.labels[index, _NODULE] == 0 and bank.labels[index, _MASS] == 0]


def nodule_thickness(diameter: float, generator: torch.Generator) -> torch.Tensor:
    """A (k, k) patch in [0, 1], k = diameter + 6 rounded up to odd: the projected thickness of a lobulated,
    slightly elliptical sphere `diameter` pixels across, its edge softened by a Gaussian blur of a fifth of its
    radius (at least half a pixel)."""
    radius = diameter / 2
    size = math.ceil(diameter) + 6 | 1
    centre = (size - 1) / 2
    coords = torch.arange(size, dtype=torch.float32) - centre
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    angle = torch.atan2(y, x)
    lobes = int(torch.randint(3, 7, (1,), generator=generator))
    depth, phase, stretch, tilt = (float(v) for v in torch.rand(4, generator=generator))
    # lobulated outline (up to 12% in and out) and an ellipse of aspect 0.8-1.0 at a random angle
    outline = radius * (1 + 0.12 * depth * torch.sin(lobes * angle + 2 * math.pi * phase))
    along = x * math.cos(math.pi * tilt) + y * math.sin(math.pi * tilt)
    across = -x * math.sin(math.pi * tilt) + y * math.cos(math.pi * tilt)
    distance = torch.sqrt(along**2 + (across / (0.8 + 0.2 * stretch)) ** 2)
    thickness = torch.sqrt((1 - (distance / outline) ** 2).clamp(min=0))
    sigma = max(0.5, 0.2 * radius)
    # zeros around the patch, so that gaussian_blur's reflected border reflects nothing of the nodule
    padded = F.pad(thickness, (3, 3, 3, 3))
    return gaussian_blur(padded[None], [7, 7], [sigma, sigma])[0, 3:-3, 3:-3]


def _place(film: torch.Tensor, lungs: torch.Tensor, size: int, generator: torch.Generator) -> tuple[int, int] | None:
    """The patch's top-left corner: a point of the lung fields (the anatomical lung prior, outside the heart's
    region) where the film, over the patch and over a neighbourhood three times as wide, is darker than the
    lung fields' 40th percentile, i.e. aerated lung away from the mediastinum, the shoulders and the
    diaphragm, and with no air outside the body in that neighbourhood; None after 400 tries."""
    extent = film.shape[-1]
    level = film[lungs > 0.5].float().quantile(0.4)
    air = film.float().quantile(0.03)  # outside the body, or collimated off
    candidates = torch.nonzero(lungs > 0.9)
    for _ in range(400):
        row, column = candidates[int(torch.randint(len(candidates), (1,), generator=generator))].tolist()
        top, left = row - size // 2, column - size // 2
        if top < size or left < size or top + 2 * size > extent or left + 2 * size > extent:
            continue
        patch = film[top : top + size, left : left + size].float().mean()
        around = film[top - size : top + 2 * size, left - size : left + 2 * size].float()
        if patch < level and around.mean() < level and around.quantile(0.1) > air:
            return top, left
    return None


def with_simulated_nodules(bank: ImageBank, count: int, seed: int) -> ImageBank:
    """The bank with `count` host films added twice under the source SOURCE: as they are, and with one simulated
    nodule (Nodule known positive, a Nodule box). Hosts are drawn without replacement from hosts(bank) by a
    generator seeded with `seed`, so the same run builds the same films."""
    generator = torch.Generator().manual_seed(seed * 31_337 + 5)
    candidates = hosts(bank)
    if count > len(candidates):
        raise SystemExit(f"--simulated-nodules {count}: only {len(candidates)} training films are known to have "
                         "neither a nodule nor a mass.")
    extent = bank.pixels.shape[-1]
    priors = anatomical_priors(extent)
    heart = priors[PATHOLOGIES.index("Cardiomegaly")]
    lungs = priors[_NODULE] * (1 - heart)
    films, labels, boxes = [], [], []
    for host in torch.randperm(len(candidates), generator=generator).tolist():
        if len(films) == 2 * count:
            break
        index = candidates[host]
        film = bank.pixels[index]
        millimetres = float(torch.empty(1).uniform_(*_DIAMETER_MM, generator=generator))
        patch = nodule_thickness(millimetres / _FILM_WIDTH_MM * extent, generator)
        corner = _place(film, lungs, patch.shape[0], generator)
        if corner is None:
            continue
        top, left = corner
        lung_dark = film[lungs > 0.5].float().quantile(0.1)
        peak = float(torch.empty(1).uniform_(*_PEAK, generator=generator)) * (255.0 - lung_dark)
        with_nodule = film.float()
        region = with_nodule[top : top + patch.shape[0], left : left + patch.shape[1]]
        region += peak * patch * (255.0 - region) / (255.0 - lung_dark).clamp(min=1.0)
        films += [film, with_nodule.round().clamp(0, 255).to(torch.uint8)]
        nodule_labels = bank.labels[index].clone()
        nodule_labels[_NODULE] = 1.0
        labels += [bank.labels[index], nodule_labels]
        rows, columns = torch.nonzero(patch > 0.05, as_tuple=True)
        position = len(bank.sources) + len(films) - 1
        boxes.append((position, TARGETS.index("Nodule"), (left + columns.min().item()) / extent,
                      (top + rows.min().item()) / extent, (left + columns.max().item() + 1) / extent,
                      (top + rows.max().item() + 1) / extent))
    if len(films) < 2 * count:
        raise SystemExit(f"--simulated-nodules {count}: only {len(films) // 2} host films had room in their lungs.")
    log.info("simulated %d nodules on %d host films", count, count)
    return ImageBank(pixels=torch.cat([bank.pixels, torch.stack(films)]),
                     labels=torch.cat([bank.labels, torch.stack(labels)]),
                     sources=bank.sources + [SOURCE] * len(films),
                     opacity=torch.cat([bank.opacity, torch.full((len(films),), float("nan"))]),
                     boxes=torch.cat([bank.boxes, torch.tensor(boxes, dtype=torch.float32)]))


def with_partners(indices: torch.Tensor, sources: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch in which every simulated film drawn comes with the other film of its pair.

    indices: the films drawn for the batch, into a bank built by with_simulated_nodules (its pairs follow every
    other film, plain film first). Returns (films, pairs): as many films as were drawn, the other films drawn
    first and then each pair, a pair drawn twice taken once; the batch keeps its size by leaving out the last
    other films drawn (at most half the batch is pairs). pairs: (P, 2) positions in films of (plain, copy).
    """
    first = sources.index(SOURCE) if SOURCE in sources else len(sources)
    drawn = indices.tolist()
    plains = list(dict.fromkeys(first + (index - first) // 2 * 2 for index in drawn if index >= first))
    plains = plains[: len(drawn) // 2]
    others = [index for index in drawn if index < first][: len(drawn) - 2 * len(plains)]
    films = others + [index for plain in plains for index in (plain, plain + 1)]
    positions = torch.arange(len(others), len(films), dtype=torch.long).view(-1, 2)
    return torch.tensor(films, dtype=torch.long), positions


def pair_ranking(logits: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Mean softplus(plain film's Nodule logit - its copy's): log 2 where the nodule changes nothing, falling
    towards zero as the copy rises above its own film, whatever the two films' level. Zero without pairs."""
    if len(pairs) == 0:
        return logits.sum() * 0
    nodule = logits[:, _NODULE].float()
    return F.softplus(nodule[pairs[:, 0]] - nodule[pairs[:, 1]]).mean()
