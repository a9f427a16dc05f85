"""Training layer4 from cached layer3 features: the same network, the same losses, a fraction of the cost."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import torch
from training_support import train_on_boxed_films

from xai_core.data import read_label_csv
from xai_core.imaging import read_xray
from xai_core.model import DEFAULT_CARD, load_model
from xai_core.preprocessing import InputSpec
from xai_core.samples import sample_images
from xai_core.training.attention import anatomical_priors, positive_weights
from xai_core.training.augment import augment, box_masks, random_affine
from xai_core.training.bank import ImageBank, read_training_boxes
from xai_core.training.config import TrainConfig
from xai_core.training.feature_bank import build, cached_films, cropped, last_block, through_layer3
from xai_core.training.loop import TrainingNetwork, _Batch, _cached_step, _fits_prior, _losses, _train_mode


def test_layer4_and_the_head_on_layer3_features_are_the_network_forward_pass():
    model = load_model(DEFAULT_CARD, device="cpu")
    network = model.network.eval()
    inputs = model.input_spec.prepare(read_xray(next(iter(sample_images().values()))).pixels)
    with torch.no_grad():
        logits, features = last_block(network, through_layer3(network, inputs))
        assert torch.allclose(logits, network(inputs), atol=1e-5)
        assert features.shape[-2:] == (inputs.shape[-1] // 32,) * 2


def _crop_corners(theta: torch.Tensor, size: int, cells: int) -> list[tuple[int, int]]:
    """(x, y) corner in cells of each crop made from the identity warp, read back from its warp."""
    corners = ((theta[:, :, 2] + 1) * size - (size - cells)) / 2
    return [(round(x), round(y)) for x, y in corners.tolist()]


def test_a_crop_of_layer3_is_layer4_on_the_moved_view_and_its_boxes_move_with_it():
    """--cached-crop: layer4 on a crop of the cached map is layer4 on the view moved by whole cells, away from the
    crop's edges; the crop's warp puts the boxes on the same cells of the map."""
    model = load_model(DEFAULT_CARD, device="cpu")
    network = model.network.eval()
    inputs = model.input_spec.prepare(read_xray(next(iter(sample_images().values()))).pixels)  # 320 px
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]).repeat(8, 1, 1)
    with torch.no_grad():
        layer3 = through_layer3(network, inputs)  # (1, 1024, 20, 20)
        crops, theta = cropped(layer3.repeat(8, 1, 1, 1), identity, 2, torch.Generator().manual_seed(5))
        _, full = last_block(network, layer3)  # (1, 2048, 10, 10)
        _, moved = last_block(network, crops)  # (8, 2048, 9, 9)
    corners = _crop_corners(theta, 20, 2)
    assert crops.shape[-2:] == (18, 18) and len(set(corners)) > 2
    even = [i for i, (x, y) in enumerate(corners) if x % 2 == 0 and y % 2 == 0 and (x, y) != (0, 0)]
    assert even, corners  # a move by a whole cell of layer4's map
    for i in even:
        x, y = corners[i][0] // 2, corners[i][1] // 2
        # cells 3-6 are three 3x3 convolutions away from the crop's edges
        assert torch.allclose(moved[i, :, 3:7, 3:7], full[0, :, y + 3 : y + 7, x + 3 : x + 7], atol=1e-4)
    box = torch.tensor([[0.0, 0.0, 0.3, 0.4, 0.7, 0.8]])  # on the cell lines of the 10 x 10 map
    whole = box_masks(box, identity[:1], 320, (10, 10))[0]
    for i in even:
        x, y = corners[i][0] // 2, corners[i][1] // 2
        box[0, 0] = i
        mask = box_masks(box, theta, 320, (9, 9))[0]
        assert torch.allclose(mask, whole[y : y + 9, x : x + 9], atol=0.06)


def test_every_boxed_film_is_cached_and_the_others_are_capped_per_source():
    sources = ["nih"] * 10 + ["rsna"] * 6 + ["jsrt"] * 2
    boxes = torch.tensor([[3, 0, 0.1, 0.1, 0.3, 0.3], [12, 14, 0.2, 0.2, 0.5, 0.6], [12, 6, 0.2, 0.2, 0.5, 0.6]])
    bank = ImageBank(pixels=torch.zeros((18, 8, 8), dtype=torch.uint8), labels=torch.zeros((18, 14)),
                     sources=sources, boxes=boxes)
    chosen = cached_films(bank, per_source=2)
    assert {3, 12} <= set(chosen)
    counts = {name: sum(1 for film in chosen if sources[film] == name) for name in ("nih", "rsna", "jsrt")}
    assert counts == {"nih": 3, "rsna": 3, "jsrt": 2}  # two unboxed each (jsrt has only two), plus the boxed
    assert cached_films(bank, per_source=0) == [3, 12]


def _boxed_bank(shared_data: Path, size: int, count: int) -> ImageBank:
    boxed = shared_data / "nih_boxed"
    findings = read_training_boxes([(boxed / "boxes.csv", boxed / "images")])
    cases = [case for case in read_label_csv(boxed / "labels.csv", boxed / "images", source="nih_boxed")
             if case.image in findings][:count]
    return ImageBank.load(cases, size, "training", findings)


def test_a_cached_view_gives_the_losses_its_pixels_give(shared_data, tmp_path):
    """The cached path (layer4 on stored layer3 features, the view's warp and boxes) scores a view as the
    pixel path scores the same augmented film; only the float16 storage of the features differs."""
    bank = _boxed_bank(shared_data, 96, 4)
    config = TrainConfig(out=tmp_path / "m.json", work_dir=tmp_path, image_size=96, cached_views=1, seed=3,
                         freeze_through="layer3", freeze_batchnorm=True, box_loss=2.0, attention_prior=1.0,
                         distil=1.0, init_from=DEFAULT_CARD)
    spec = InputSpec(size=96)
    model = TrainingNetwork(load_model(DEFAULT_CARD, device="cpu").network)
    reference = load_model(DEFAULT_CARD, device="cpu").network.eval()
    films = [0, 1, 2, 3]
    cached = build(model.network, reference, bank, films, config, spec.normalise, torch.device("cpu"))
    assert cached.features.dtype == torch.float16 and torch.equal(cached.films, torch.tensor(films))
    assert len(bank.boxes_of(cached.films)) > 0

    prior, pos_weight = anatomical_priors(96), positive_weights(bank.labels)
    opacity_weight = positive_weights(bank.opacity.unsqueeze(1))
    views = torch.arange(4)
    from_cache = _cached_step(model, cached, bank, views, config, 0, torch.device("cpu"), prior, pos_weight,
                              opacity_weight)

    generator = torch.Generator().manual_seed(config.seed * 7_919)  # view 0's draw, as build makes it
    theta = random_affine(4, config, generator)
    inputs = spec.normalise(augment(bank.pixels[views].float() / 255.0, theta, config, generator))
    _train_mode(model, model, config)
    logits, opacity_logit, features = model(inputs)
    with torch.no_grad():
        reference_logits = reference(inputs)
    batch = _Batch(theta, bank.labels[views], bank.opacity[views], _fits_prior(bank, views, torch.device("cpu")),
                   bank.boxes_of(views))
    from_pixels = _losses(model, batch, logits, opacity_logit, features, reference_logits, None, config, prior,
                          pos_weight, opacity_weight)
    assert torch.allclose(cached.theta, theta)
    for name, cached_value, pixel_value in zip(("classification", "prior", "box", "drift"),
                                               (from_cache[0], from_cache[2], from_cache[3], from_cache[6]),
                                               (from_pixels[0], from_pixels[2], from_pixels[3], from_pixels[6])):
        assert cached_value.item() == pytest.approx(pixel_value.item(), rel=2e-2, abs=2e-3), name
    assert 0 < from_cache[3].item() < 1  # the boxes were scored


def _train(shared_data: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return train_on_boxed_films(shared_data, tmp_path, "--lr", "1e-4", "--distil", "1.0", "--freeze-batchnorm", *extra)


def test_cached_training_changes_layer4_and_the_head_only_and_reuses_its_bank_on_resume(shared_data, tmp_path):
    result = _train(shared_data, tmp_path, "--steps", "2", "--validate-every", "2", "--freeze-through", "layer3",
                    "--cached-views", "2", "--cached-crop", "1", "--box-contrast", "1.0")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (tmp_path / "work" / "train.log").read_text()
    assert "cached view 2/2 of 4 films" in log
    outside = [float(value) for value in re.findall(r"box evidence outside ([0-9.]+)", log)]
    assert outside and 0 < outside[-1] < 1
    contrast = [float(value) for value in re.findall(r"box evidence other films minus own (-?[0-9.]+)", log)]
    assert contrast and -1 <= contrast[-1] <= 1 and contrast[-1] != 0  # four boxed films: each has others
    reference = load_model(DEFAULT_CARD, device="cpu").network.state_dict()
    tuned = load_model(tmp_path / "out" / "m.json", device="cpu").network.state_dict()
    changed = {name.split(".")[0] for name, tensor in tuned.items() if not torch.equal(tensor, reference[name])}
    assert changed == {"layer4", "fc"}, changed
    card = load_model(tmp_path / "out" / "m.json", device="cpu").card
    augmentation = card.training["box_supervision"]["augmentation"]
    assert augmentation.startswith("2 fixed augmented views per film") and "map 1 cell (16 px each) smaller" in augmentation

    resumed = _train(shared_data, tmp_path, "--steps", "3", "--validate-every", "3", "--freeze-through", "layer3",
                     "--cached-views", "2", "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    log = (tmp_path / "work" / "train.log").read_text()
    assert "resumed from step 2" in log and "cached features read from" in log


def test_a_dilated_last_block_trains_from_the_same_cached_features(shared_data, tmp_path):
    """--output-stride 16: layer4 dilated (maps 6 x 6 at 96 px instead of 3 x 3), started from the shipped weights,
    trained on the cached views; the card says so and the viewer loads it."""
    result = _train(shared_data, tmp_path, "--steps", "1", "--validate-every", "1", "--freeze-through", "layer3",
                    "--cached-views", "1", "--output-stride", "16")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    tuned = load_model(tmp_path / "out" / "m.json", device="cpu")
    assert tuned.card.output_stride == 16 and tuned.card.map_grid == 6
    assert tuned.card.training["config"]["output_stride"] == 16


def test_cached_views_without_layer3_frozen_are_refused_with_a_reason(shared_data, tmp_path):
    result = _train(shared_data, tmp_path, "--steps", "1", "--freeze-through", "layer2", "--cached-views", "2")
    assert result.returncode != 0
    assert "--cached-views trains layer4 and the head on fixed views: it needs --freeze-through layer3" in result.stderr
    result = _train(shared_data, tmp_path, "--steps", "1", "--freeze-through", "layer3", "--cached-crop", "2")
    assert result.returncode != 0 and "--cached-crop crops cached views: it needs --cached-views." in result.stderr
