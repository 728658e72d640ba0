"""Reference statistics for drift monitoring: what a deployed system can watch without labels,
as the model was built (out-of-fold P(urgent) of the training scans, their intensities)."""

from __future__ import annotations

import numpy as np

from imaging.statistics import input_statistics
from schemas.model_card import URGENT_CLASS

P_URGENT_BINS = 10
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _distribution(values: np.ndarray) -> dict:
    return {
        "mean": round(float(values.mean()), 4),
        "std": round(float(values.std()), 4),
        "quantiles": {
            f"{q:g}": round(float(v), 4)
            for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)
        },
    }


def reference_statistics(images: np.ndarray, out_of_fold: np.ndarray, threshold: float) -> dict:
    """P(urgent) histogram of the out-of-fold scans, per-scan mean intensity and contrast
    (`imaging.statistics`, as the worker records them), and the share flagged urgent."""
    p2 = out_of_fold[:, URGENT_CLASS]
    counts, edges = np.histogram(p2, bins=P_URGENT_BINS, range=(0.0, 1.0))
    mean_intensity, contrast = input_statistics(images)
    return {
        "scans": int(len(images)),
        "p_urgent_histogram": {
            "edges": [round(float(e), 2) for e in edges],
            "shares": [round(float(c) / max(len(p2), 1), 4) for c in counts],
        },
        "mean_intensity": _distribution(mean_intensity),
        "contrast": _distribution(contrast),
        "flagged_urgent_share": round(float((p2 >= threshold).mean()), 4),
        "basis": "out-of-fold predictions of the published candidate on its training scans",
    }
