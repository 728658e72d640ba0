"""Candidate selection and architecture ensembles (built from trained members, not retrained)."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.candidates import CANDIDATES, select_candidates


def test_every_candidate_maps_scans_to_a_softmax() -> None:
    images = np.random.default_rng(0).random((4, 64, 64, 1), dtype=np.float32)
    for candidate in CANDIDATES.values():
        if candidate.combines:
            continue
        output = np.asarray(candidate.build()(images, training=False))
        assert output.shape == (4, 3), candidate.name
        assert output.sum(axis=1) == pytest.approx(np.ones(4), abs=1e-5), candidate.name


def test_an_ensemble_brings_its_members_once_and_first() -> None:
    ensembles = [c for c in CANDIDATES.values() if c.combines]
    assert ensembles, "expected at least one architecture ensemble"
    ensemble = ensembles[0]
    names = [c.name for c in select_candidates([ensemble.name, ensemble.combines[0]])]
    assert names[-1] == ensemble.name
    assert sorted(names[:-1]) == sorted(ensemble.combines)
    assert [c.name for c in select_candidates(None)] == list(CANDIDATES)  # already in order
    assert sum(c.baseline for c in select_candidates(None)) == 2


def test_combined_model_is_the_mean_softmax_of_its_members() -> None:
    from trainer.fit import FitResult, combine_results, predict_proba

    ensemble = next(c for c in CANDIDATES.values() if c.combines)
    members = [FitResult(CANDIDATES[name].build(), [{"loss": [1.0]}]) for name in ensemble.combines]
    images = np.random.default_rng(1).random((5, 64, 64, 1), dtype=np.float32)
    expected = np.mean([predict_proba(m.model, images) for m in members], axis=0)
    combined = combine_results(ensemble, members)
    assert predict_proba(combined.model, images) == pytest.approx(expected, abs=1e-6)
    assert len(combined.histories) == len(members)


def test_without_validation_a_fit_runs_exactly_the_given_epochs(phantoms) -> None:  # noqa: ANN001
    from schemas.scans import to_model_input
    from trainer.fit import fit_candidate

    images, labels = phantoms[0][:64], phantoms[1][:64]
    result = fit_candidate(
        CANDIDATES["baseline_1conv"], (to_model_input(images), labels), None, 3, 0
    )
    (history,) = result.histories
    assert len(history["loss"]) == 3 and "val_loss" not in history
