"""NPY and NPZ files -> numpy arrays, never unpickling; errors name the file and the reason.

Intake (`imaging.files`) and the trainer's data sets (`trainer.data`) both read arrays here.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from imaging.canonical import ScanError


def load_npy(path: Path, source: str) -> np.ndarray:
    """The array of an NPY file."""
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as error:
        raise _refusal(source, "NPY", error) from None
    except (OSError, EOFError) as error:
        raise ScanError(source, f"not a valid NPY file ({error})") from None


def load_npz(path: Path, source: str) -> dict[str, np.ndarray]:
    """Every array of an NPZ file, by name."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as error:
        raise _refusal(source, "NPZ", error) from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ScanError(source, f"not a valid NPZ file ({error})") from None


def npz_images(path: Path, source: str) -> np.ndarray:
    """The `images` array of an NPZ (or its only array)."""
    arrays = load_npz(path, source)
    if "images" in arrays:
        return arrays["images"]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    found = ", ".join(arrays) or "nothing"
    raise ScanError(source, f"NPZ has no `images` array (found: {found})")


def _refusal(source: str, kind: str, error: ValueError) -> ScanError:
    if "pickle" in str(error).lower():
        return ScanError(source, f"{kind} holds Python objects (pickled data is refused)")
    return ScanError(source, f"not a valid {kind} file ({error})")
