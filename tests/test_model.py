"""The checkpoint: model card, integrity checks, device choice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from xai_core.card import read_card
from xai_core.errors import XRayError
from xai_core.explanation import explain
from xai_core.imaging import read_xray
from xai_core.labels import PATHOLOGIES
from xai_core.model import build_network, choose_device, default_card, load_model, save_checkpoint
from xai_core.samples import sample_images


@pytest.fixture
def checkpoint_copy(tmp_path) -> Path:
    """A copy of the default checkpoint that a test may damage."""
    card = default_card()
    shutil.copy(card, tmp_path / card.name)
    weights = json.loads(card.read_text())["weights_file"]
    shutil.copy(card.parent / weights, tmp_path / weights)
    return tmp_path / card.name


def test_the_card_describes_the_checkpoint(model):
    card = model.card
    assert card.labels == PATHOLOGIES
    assert card.input == model.input_spec and card.target_layer == "layer4"
    assert set(model.thresholds()) == set(PATHOLOGIES)
    assert all(0.0 < value < 1.0 for value in model.thresholds().values())
    assert card.training["command"].startswith("python -m xai_core train")


def test_weights_load_as_float32_on_the_chosen_device(model):
    parameters = list(model.network.parameters())
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in parameters)
    assert model.device == torch.device("cpu")
    assert not model.network.training


def test_a_tampered_weights_file_is_refused(checkpoint_copy):
    weights = checkpoint_copy.with_suffix(".safetensors")
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    weights.write_bytes(bytes(blob))
    with pytest.raises(XRayError, match="sha256"):
        load_model(checkpoint_copy, device="cpu")


def test_a_truncated_weights_file_is_refused(checkpoint_copy):
    weights = checkpoint_copy.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(XRayError, match="modified, truncated"):
        load_model(checkpoint_copy, device="cpu")


def test_a_missing_weights_file_is_refused(checkpoint_copy):
    checkpoint_copy.with_suffix(".safetensors").unlink()
    with pytest.raises(XRayError, match="missing"):
        load_model(checkpoint_copy, device="cpu")


def test_a_card_with_another_label_order_is_refused(checkpoint_copy):
    card = json.loads(checkpoint_copy.read_text())
    card["labels"] = list(reversed(card["labels"]))
    checkpoint_copy.write_text(json.dumps(card))
    with pytest.raises(XRayError, match="label list or order"):
        load_model(checkpoint_copy, device="cpu")


@pytest.mark.parametrize("content", ["", "{not json", json.dumps({"format": "something-else"}), "[1, 2]"])
def test_a_damaged_or_foreign_card_is_refused(tmp_path, content):
    card = tmp_path / "card.json"
    card.write_text(content)
    with pytest.raises(XRayError):
        read_card(card)


def test_a_card_without_its_weights_entries_is_refused_with_a_clear_message(checkpoint_copy):
    card = json.loads(checkpoint_copy.read_text())
    del card["weights_sha256"]
    checkpoint_copy.write_text(json.dumps(card))
    with pytest.raises(XRayError, match="incomplete or damaged"):
        load_model(checkpoint_copy, device="cpu")


def test_a_missing_card_is_refused(tmp_path):
    with pytest.raises(XRayError, match="not found"):
        load_model(tmp_path / "nothing.json", device="cpu")


def test_weights_of_another_architecture_are_refused_even_with_a_matching_sha(tmp_path):
    network = build_network()
    network.fc = torch.nn.Linear(2048, 13)  # a 13-label head, card claims 14
    save_checkpoint(network, {"model_version": "wrong-head"}, tmp_path / "wrong.json")
    with pytest.raises(XRayError, match="ResNet-50 with a 14-label head"):
        load_model(tmp_path / "wrong.json", device="cpu")


def test_a_pickle_is_never_read(tmp_path):
    """A .pt pickle named as the weights file fails the checks; it is never unpickled."""
    network = build_network()
    card = save_checkpoint(network, {"model_version": "x"}, tmp_path / "m.json")
    torch.save(network.state_dict(), tmp_path / card.weights_file)
    with pytest.raises(XRayError):
        load_model(tmp_path / "m.json", device="cpu")


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    network = build_network().eval()
    save_checkpoint(network, {"model_version": "9.9", "thresholds": {"Pneumonia": 0.3}}, tmp_path / "m.json")
    loaded = load_model(tmp_path / "m.json", device="cpu")
    assert loaded.version == "9.9"
    assert loaded.thresholds()["Pneumonia"] == 0.3 and loaded.thresholds()["Hernia"] == 0.5
    for name, tensor in network.state_dict().items():
        if tensor.is_floating_point():
            torch.testing.assert_close(loaded.network.state_dict()[name], tensor.half().float())


def test_a_dilated_checkpoint_keeps_its_finer_maps_through_save_and_load(tmp_path):
    """Output stride 16: the shipped weights in a network whose layer4 is dilated, saved and read back as such,
    with all 14 maps twice as fine (20 x 20 at 320 px) from the same one forward pass."""
    network = build_network(output_stride=16)
    network.load_state_dict(load_model(device="cpu").network.state_dict())
    card = save_checkpoint(network.eval(), {"model_version": "dilated", "input": {"size": 320}}, tmp_path / "d.json")
    assert card.output_stride == 16 and card.map_grid == 20 and "dilated" in card.architecture
    loaded = load_model(tmp_path / "d.json", device="cpu")
    explanation = explain(loaded, read_xray(next(iter(sample_images().values()))))
    assert explanation.raw_cams.shape == (len(PATHOLOGIES), 20, 20)
    assert read_card(default_card()).output_stride == 32 and read_card(default_card()).map_grid == 10


def test_a_card_asking_for_an_output_stride_this_viewer_cannot_build_is_refused(checkpoint_copy):
    data = json.loads(checkpoint_copy.read_text())
    checkpoint_copy.write_text(json.dumps({**data, "output_stride": 8}))
    with pytest.raises(XRayError, match="needs a network with output stride 8; this version of the viewer builds "
                                        "32 or 16"):
        load_model(checkpoint_copy, device="cpu")


def test_device_choice(monkeypatch):
    monkeypatch.delenv("XAI_DEVICE", raising=False)
    assert choose_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert choose_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("XAI_DEVICE", "cpu")
    assert choose_device() == torch.device("cpu")
    with pytest.raises(XRayError, match="Unknown device"):
        choose_device("quantum")
    if not torch.cuda.is_available():
        with pytest.raises(XRayError, match="no CUDA GPU"):
            choose_device("cuda")


def test_the_environment_selects_another_checkpoint(monkeypatch, tmp_path):
    monkeypatch.setenv("XAI_MODEL_CARD", str(tmp_path / "hospital.json"))
    assert default_card() == tmp_path / "hospital.json"
