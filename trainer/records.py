"""Recorded estimates: the two validation designs take long, so `triage estimate` records them
and `triage train` reuses a record that matches its data and settings.

Records live in the model root (`MODEL_ROOT/estimates/`) or beside the data
(`DATA_FOLDER/estimates/`), never in the package: an installed package is read-only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

RECIPE_VERSION = "5"  # bump when the pipeline changes: records are keyed by it
FOLDER = "estimates"


def record_key(
    fingerprint: str,
    candidates: list[str],
    folds: int,
    epochs: int | None,
    target: float,
    grouped: bool,
) -> str:
    """A record's file name: data, pipeline version and every setting the estimate depends on."""
    settings = json.dumps([sorted(candidates), folds, epochs, target, grouped, RECIPE_VERSION])
    return f"{fingerprint[:16]}-{hashlib.sha256(settings.encode()).hexdigest()[:10]}.json"


def record_places(model_root: Path, data: object) -> list[Path]:
    """Where records are looked for: the model root, then beside the data (when a file)."""
    places = [Path(model_root) / FOLDER]
    if isinstance(data, (str, Path)) and Path(str(data).split(",")[0]).exists():
        places.append(Path(str(data).split(",")[0]).resolve().parent / FOLDER)
    return places


def find_record(key: str, fingerprint: str, places: list[Path]) -> dict | None:
    """The first matching record, with the path it came from."""
    for place in places:
        path = place / key
        if path.is_file():
            record = json.loads(path.read_text())
            if record.get("data_fingerprint") == fingerprint:
                return record | {"path": str(path)}
    return None


def write_record(folder: Path, key: str, record: dict) -> Path:
    """Write a record atomically (a half-written one is never read)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / key
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    partial.replace(path)
    return path
