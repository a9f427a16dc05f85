"""The card a training run writes says what the run did."""

from __future__ import annotations

from pathlib import Path

from xai_core.training.card import LIMITATIONS, PRIORS_LIMITATION, limitations
from xai_core.training.config import TrainConfig


def test_the_anatomical_priors_limitation_is_written_only_for_a_run_that_used_them():
    with_priors = TrainConfig(out=Path("m.json"), work_dir=Path("work"), attention_prior=1.0)
    without = TrainConfig(out=Path("m.json"), work_dir=Path("work"))
    assert limitations(with_priors) == [*LIMITATIONS, PRIORS_LIMITATION]
    assert limitations(without) == LIMITATIONS and PRIORS_LIMITATION not in LIMITATIONS
