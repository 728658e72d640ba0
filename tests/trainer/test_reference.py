from __future__ import annotations

import numpy as np
import pytest

from trainer.reference import reference_statistics


def test_reference_statistics_describe_what_a_monitor_can_see() -> None:
    images = np.stack([np.full((64, 64), v, np.uint8) for v in (10, 200)] * 5)
    images[0, :32] = 250  # one scan with contrast
    p2 = np.array([0.05, 0.95] * 5)
    out_of_fold = np.stack([1 - p2, np.zeros(10), p2], axis=1)
    stats = reference_statistics(images, out_of_fold, threshold=0.5)
    assert sum(stats["p_urgent_histogram"]["shares"]) == pytest.approx(1.0)
    assert stats["p_urgent_histogram"]["shares"][0] == 0.5
    assert stats["flagged_urgent_share"] == 0.5
    assert stats["mean_intensity"]["mean"] == pytest.approx(
        np.mean(images.reshape(10, -1).mean(1)), abs=1e-3
    )
    assert stats["contrast"]["quantiles"]["0.95"] > 0 == stats["contrast"]["quantiles"]["0.5"]
