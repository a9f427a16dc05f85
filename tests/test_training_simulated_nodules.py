"""Simulated nodules on real films: who may host one, where it goes, what it changes, and its box and label."""

from __future__ import annotations

import math

import pytest
import torch
from training_support import train_on_boxed_films

from xai_core.data import read_nih, read_pediatric
from xai_core.labels import PATHOLOGIES
from xai_core.training.attention import anatomical_priors
from xai_core.training.bank import TARGETS, ImageBank
from xai_core.training.simulated_nodules import (
    SOURCE, hosts, nodule_thickness, pair_ranking, with_partners, with_simulated_nodules,
)

NODULE, MASS = PATHOLOGIES.index("Nodule"), PATHOLOGIES.index("Mass")


@pytest.fixture(scope="module")
def bank(shared_data) -> ImageBank:
    """24 NIH training films and 4 pediatric ones at 320 px, as training decodes them."""
    cases = read_nih(shared_data / "nih", ["train"])[:24] + read_pediatric(shared_data / "pediatric_pneumonia",
                                                                         ["train"])[:4]
    return ImageBank.load(cases, 320, "test")


def test_hosts_are_adult_films_known_to_have_neither_a_nodule_nor_a_mass(bank):
    chosen = hosts(bank)
    assert chosen, "some of 24 NIH films have no nodule and no mass"
    for index in range(len(bank.sources)):
        clear = bank.labels[index, NODULE] == 0 and bank.labels[index, MASS] == 0
        assert (index in chosen) == (clear and bank.sources[index] != "pediatric")
    # a film whose nodule label is unknown is not a host either
    unknown = ImageBank(pixels=bank.pixels[:1], labels=torch.full((1, len(PATHOLOGIES)), float("nan")), sources=["x"])
    assert hosts(unknown) == []


def test_each_host_enters_twice_and_only_the_nodule_copy_changes_inside_its_box(bank):
    count = 4
    out = with_simulated_nodules(bank, count, seed=3)
    n = len(bank.sources)
    assert len(out.sources) == n + 2 * count and out.sources[n:] == [SOURCE] * (2 * count)
    assert torch.equal(out.pixels[:n], bank.pixels) and torch.equal(out.boxes[: len(bank.boxes)], bank.boxes)
    new_boxes = out.boxes[len(bank.boxes):]
    assert len(new_boxes) == count
    lungs = anatomical_priors(320)[NODULE]
    for pair in range(count):
        plain, nodule = n + 2 * pair, n + 2 * pair + 1
        host = next(i for i in range(n) if torch.equal(bank.pixels[i], out.pixels[plain]))
        assert host in hosts(bank)
        assert torch.equal(out.labels[plain].nan_to_num(-1), bank.labels[host].nan_to_num(-1))
        expected = bank.labels[host].clone()
        expected[NODULE] = 1
        assert torch.equal(out.labels[nodule].nan_to_num(-1), expected.nan_to_num(-1))
        (box,) = new_boxes[new_boxes[:, 0] == nodule]
        assert TARGETS[int(box[1])] == "Nodule"
        x0, y0, x1, y1 = (float(v) * 320 for v in box[2:])
        # 8-30 mm on a 400 mm film is 6.4-24 px at 320 px; the box is the softened edge's extent
        assert 5 <= x1 - x0 <= 32 and 5 <= y1 - y0 <= 32
        changed = torch.nonzero(out.pixels[nodule].int() != out.pixels[plain].int())
        assert len(changed) > 0
        assert changed[:, 0].min() >= y0 - 1 and changed[:, 0].max() < y1 + 1
        assert changed[:, 1].min() >= x0 - 1 and changed[:, 1].max() < x1 + 1
        inside = (slice(int(y0), math.ceil(y1)), slice(int(x0), math.ceil(x1)))
        assert (out.pixels[nodule][inside].int() >= out.pixels[plain][inside].int()).all()  # dense is bright
        assert lungs[int((y0 + y1) / 2), int((x0 + x1) / 2)] > 0.9  # in the lung fields


def test_the_same_seed_builds_the_same_films_and_another_seed_others(bank):
    first, again, other = (with_simulated_nodules(bank, 3, seed=s) for s in (5, 5, 6))
    assert torch.equal(first.pixels, again.pixels) and torch.equal(first.boxes, again.boxes)
    assert not torch.equal(first.boxes, other.boxes)


def test_asking_for_more_nodules_than_hosts_says_how_many_there_are(bank):
    with pytest.raises(SystemExit, match=f"only {len(hosts(bank))} training films"):
        with_simulated_nodules(bank, len(hosts(bank)) + 1, seed=0)


def test_the_nodule_is_a_softened_sphere_of_the_asked_diameter():
    patch = nodule_thickness(16.0, torch.Generator().manual_seed(0))
    assert patch.shape[0] == patch.shape[1] and patch.shape[0] % 2 == 1
    assert 0.9 < patch.max() <= 1 and patch[0].max() < 0.01  # thickest inside, nothing at the patch's edge
    across = (patch > 0.05).sum(1).max().item()
    assert 12 <= across <= 22  # 16 px, give or take the lobulation, ellipse and blur


def test_a_drawn_simulated_film_brings_its_partner_and_the_batch_keeps_its_size():
    sources = ["nih"] * 6 + [SOURCE] * 6  # pairs (6, 7), (8, 9), (10, 11)
    films, pairs = with_partners(torch.tensor([0, 9, 1, 2, 8, 3, 11, 4]), sources)
    # 9 and 8 are one pair (taken once), 11 brings 10; the last other film drawn (4) makes room
    assert films.tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    assert pairs.tolist() == [[4, 5], [6, 7]]
    assert all(sources[films[p]] == SOURCE and films[c] == films[p] + 1 for p, c in pairs.tolist())
    # a batch of simulated films only: at most half of it pairs, still its size
    films, pairs = with_partners(torch.tensor([6, 8, 10, 0]), sources)
    assert films.tolist() == [6, 7, 8, 9] and pairs.tolist() == [[0, 1], [2, 3]]
    # no simulated films: the batch as drawn
    films, pairs = with_partners(torch.tensor([5, 0, 3]), ["nih"] * 6)
    assert films.tolist() == [5, 0, 3] and pairs.shape == (0, 2)


def test_pair_ranking_falls_as_the_copy_rises_above_its_own_film_whatever_their_level():
    logits = torch.zeros(4, len(PATHOLOGIES), requires_grad=True)
    pairs = torch.tensor([[0, 1], [2, 3]])
    assert pair_ranking(logits, pairs).item() == pytest.approx(math.log(2))
    apart, level = torch.zeros(4, len(PATHOLOGIES)), torch.zeros(4, len(PATHOLOGIES))
    apart[[1, 3], NODULE] = 3.0
    level[:, NODULE] = 7.0
    level[[1, 3], NODULE] = 10.0
    assert pair_ranking(apart, pairs).item() == pytest.approx(math.log1p(math.exp(-3)))
    assert pair_ranking(level, pairs).item() == pytest.approx(pair_ranking(apart, pairs).item())
    # only the Nodule output is compared
    other = torch.zeros(4, len(PATHOLOGIES))
    other[[1, 3], MASS] = 5.0
    assert pair_ranking(other, pairs).item() == pytest.approx(math.log(2))
    # the gradient lifts the copy and lowers its film
    pair_ranking(logits, pairs).backward()
    assert (logits.grad[[1, 3], NODULE] < 0).all() and (logits.grad[[0, 2], NODULE] > 0).all()
    assert pair_ranking(logits, torch.empty(0, 2, dtype=torch.long)).item() == 0


def test_a_training_run_with_ranked_simulated_nodules_records_them_in_the_card(shared_data, tmp_path):
    result = train_on_boxed_films(shared_data, tmp_path, "--steps", "2", "--lr", "1e-4", "--validate-every", "2",
                                  "--freeze-through", "layer3", "--simulated-nodules", "1",
                                  "--share", f"{SOURCE}=0.5", "--pair-ranking", "1.0")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (tmp_path / "work" / "train.log").read_text()
    assert "simulated 1 nodules on 1 host films" in log and f"'{SOURCE}': 2" in log
    # half of the 4-film draw is simulated, so every batch holds the pair: the ranking term is not zero
    ranking = [float(line.split("simulated copy not above its film ")[1].split()[0])
               for line in log.splitlines() if "simulated copy not above its film" in line]
    assert ranking and ranking[-1] > 0
    card = (tmp_path / "out" / "m.json").read_text()
    assert "one simulated nodule" in card and "ranked above its film" in card


def test_pair_ranking_without_simulated_nodules_says_what_it_needs(shared_data, tmp_path):
    result = train_on_boxed_films(shared_data, tmp_path, "--steps", "1", "--pair-ranking", "1.0")
    assert result.returncode != 0 and "--pair-ranking" in result.stderr and "--simulated-nodules" in result.stderr
