"""The default recipe trained on phantoms: what the demo, the benchmarks and the integration
tests publish and serve when no real scans are at hand.

The same candidates, ensemble and selection by out-of-fold macro F1 as `triage train`; two
folds and no estimate (`folds=0`): the numbers would say nothing about patients anyway.
TRAIN_SCANS is the fewest with which the recipe learns the phantoms clearly (TRAINING.md,
"Phantoms").
"""

from __future__ import annotations

from pathlib import Path

TRAIN_SCANS = 2000
TRAIN_MIX = (0.34, 0.33, 0.33)  # many distinct findings of each class: learnt in fewer scans


def publish_on_phantoms(
    out: str | Path,
    scans: int = TRAIN_SCANS,
    seed: int = 0,
    epochs: int | None = None,
    console=None,  # noqa: ANN001 - rich.console.Console; None: quiet
) -> Path:
    """Train the default recipe on `scans` phantoms of `seed` and publish it under `out`."""
    import io

    from rich.console import Console

    from trainer.data import scan_set_from_arrays
    from trainer.synth import make_phantoms
    from trainer.train import run_training

    data = scan_set_from_arrays(*make_phantoms(scans, TRAIN_MIX, seed=seed), source="phantoms")
    data.synthetic = True  # the card says so: its numbers say nothing about patients
    console = console or Console(file=io.StringIO(), width=170)
    return run_training(data, out=out, epochs=epochs, seed=seed, folds=0, console=console)
