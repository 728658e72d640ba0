"""What the retired trainer experiments on real scans share: their common options and the labelled scans
with their patient groups."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def add_real_scan_options(parser: argparse.ArgumentParser, cache: str) -> None:
    """--data, --groups, --group-column, --epochs, --patience, --recall and --cache."""
    parser.add_argument("--data", required=True)
    parser.add_argument("--groups", required=True)
    parser.add_argument("--group-column", default="pseudo_case")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--recall", type=float, default=0.95)
    parser.add_argument("--cache", default=cache)


def load_real_scans(args: argparse.Namespace):  # noqa: ANN201 - (trainer.data.ScanSet, groups)
    """The labelled scans and their patient groups, as the options name them."""
    from trainer.data import load_groups, load_scans

    scans = load_scans(args.data, require_labels=True)
    groups: np.ndarray = load_groups(args.groups, args.group_column, len(scans.images))
    return scans, groups


def cache_folder(path: str | Path) -> Path:
    """The cache folder, created if missing."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
