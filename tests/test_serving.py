"""The process's shared model (xai_core.serving): the bundled sample's explanation is made while the server starts,
so the first "Open sample" runs no forward pass; every other film is explained when asked, by the same model."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from xai_core import serving
from xai_core.explanation import explain
from xai_core.imaging import read_xray


@pytest.fixture
def network_passes() -> Iterator[list[int]]:
    """How many times the shared model's network runs (a hook on the real network, nothing replaced)."""
    passes: list[int] = []
    hook = serving.shared_model().network.register_forward_hook(lambda *_: passes.append(1))
    yield passes
    hook.remove()


def test_the_sample_is_explained_at_start_and_opening_it_runs_no_forward_pass(chest_dicom, network_passes):
    sample = read_xray(chest_dicom)
    kept = serving.explained(sample)
    assert network_passes == []
    fresh = explain(serving.shared_model(), sample)
    assert len(network_passes) == 1  # the hook does count a pass
    assert kept.labels == fresh.labels
    np.testing.assert_allclose(kept.probabilities, fresh.probabilities, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(kept.raw_cams, fresh.raw_cams, rtol=1e-4, atol=1e-6)


def test_another_film_is_explained_when_asked(chest_png16, network_passes):
    film = read_xray(chest_png16)  # the sample's pixels in another file: not the sample
    explanation = serving.explained(film)
    assert len(network_passes) == 1
    np.testing.assert_allclose(explanation.probabilities, explain(serving.shared_model(), film).probabilities,
                               rtol=1e-5, atol=1e-6)


def test_the_kept_explanation_is_shared_read_only(chest_dicom):
    kept = serving.explained(read_xray(chest_dicom))
    assert kept is serving.explained(read_xray(chest_dicom))
    with pytest.raises(ValueError, match="read-only"):
        kept.raw_cams[0, 0, 0] = 1.0


def test_the_servers_warm_up_imports_the_pages_modules_and_does_streamlits_first_page_check(monkeypatch):
    """What app/server.py does before /api/ready says OK, so that the first reader's first run does not: every
    module app/main.py imports is loaded, and Streamlit's once-per-process check on the first element a page draws
    (0.3 s) is done."""
    import sys

    from streamlit import delta_generator

    from app import server

    monkeypatch.setattr(delta_generator, "_use_warning_has_been_displayed", False)  # as in a new process
    server.import_page_modules()
    assert delta_generator._use_warning_has_been_displayed
    assert "app.method_picker" in server.page_modules()
    assert [module for module in server.page_modules() if module not in sys.modules] == []
