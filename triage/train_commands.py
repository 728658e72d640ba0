"""Trainer commands: `triage train`, `predict`, `evaluate` and `synth` (thin calls into trainer/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    """Add the trainer's commands to the `triage` app."""
    app.command("train")(train)
    app.command("predict")(predict)
    app.command("evaluate")(evaluate)
    app.command("synth")(synth)


DATA_HELP = (
    "Scans: images+labels .npz, MedMNIST-style .npz, `images.npy,labels.npy`, "
    "or a folder of class sub-folders (0/1/2) of PNG/JPEG/DICOM."
)


def train(
    data: Annotated[str, typer.Option("--data", help=DATA_HELP)],
    out: Annotated[
        Path | None, typer.Option("--out", help="Model root (default: TRIAGE_MODEL_DIR).")
    ] = None,
    groups: Annotated[
        Path | None, typer.Option("--groups", help="CSV with one row per image naming its group.")
    ] = None,
    group_column: Annotated[
        str | None, typer.Option("--group-column", help="The CSV column holding the group.")
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Most epochs per model.")] = 60,
    seed: Annotated[int, typer.Option("--seed", help="Seed for split, balancing and weights.")] = 0,
    candidates: Annotated[
        str | None,
        typer.Option("--candidates", help="Comma-separated candidate names (default: all)."),
    ] = None,
    urgent_recall: Annotated[
        float | None,
        typer.Option("--urgent-recall", help="Target class-2 recall for the urgent threshold."),
    ] = None,
    folds: Annotated[
        int,
        typer.Option(
            "--folds",
            min=0,
            help="Publish the mean of this many copies of the selected candidate, cross-fitted "
            "over train+val (0: publish the selected candidate as trained).",
        ),
    ] = 4,
) -> None:
    """Train the candidates, select by validation macro F1, cross-fit the best and publish it."""
    from trainer.train import run_training

    names = [name.strip() for name in candidates.split(",")] if candidates else None
    try:
        run_training(
            data,
            out=out,
            epochs=epochs,
            seed=seed,
            candidates=names,
            groups=groups,
            group_column=group_column,
            urgent_recall=urgent_recall,
            folds=folds,
        )
    except ValueError as error:
        _fail(error)


def predict(
    model: Annotated[Path, typer.Option("--model", help="Model directory or model root.")],
    data: Annotated[str, typer.Option("--data", help=DATA_HELP + " Labels are optional.")],
    out: Annotated[Path, typer.Option("--out", help="CSV to write, one row per image.")],
) -> None:
    """Classify every image in input order: index,predicted,p0,p1,p2,urgent."""
    from trainer.data import load_scans
    from trainer.inference import load_model, write_predictions

    try:
        loaded = load_model(model)
        scans = load_scans(data, require_labels=False)
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    rows = write_predictions(loaded, scans.images, out)
    Console().print(f"wrote {rows} predictions to {out} (model {loaded.card.version})")


def evaluate(
    model: Annotated[Path, typer.Option("--model", help="Model directory or model root.")],
    data: Annotated[str, typer.Option("--data", help=DATA_HELP)],
) -> None:
    """Report a published model on any labelled data set (at its urgent threshold)."""
    from trainer.data import load_scans
    from trainer.inference import evaluation_report, load_model

    try:
        loaded = load_model(model)
        scans = load_scans(data, require_labels=True)
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    evaluation_report(loaded, scans, Console())


def _fail(error: Exception) -> None:
    Console(stderr=True, soft_wrap=True).print(
        f"error: {error}", style="red", markup=False, highlight=False
    )
    raise typer.Exit(2)


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
