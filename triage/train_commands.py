"""Trainer commands: `triage train`, `predict`, `evaluate` and `synth` (thin calls into trainer/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    """Add the trainer's commands to the `triage` app."""
    app.command("synth")(synth)


def synth(
    n: Annotated[int, typer.Option("--n", min=1, help="Number of phantom scans.")],
    out: Annotated[Path, typer.Option("--out", help="The .npz file to write.")],
    mix: Annotated[
        str, typer.Option("--mix", help="Class shares healthy,non-urgent,urgent.")
    ] = "0.79,0.18,0.03",
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Write SYNTHETIC phantom lung scans (images, labels, synthetic=True) for tests and demos."""
    from trainer.synth import parse_mix, write_phantoms

    try:
        shares = parse_mix(mix)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--mix") from None
    path = write_phantoms(out, n, shares, seed)
    Console().print(f"wrote {n} synthetic phantom scans to {path}")
