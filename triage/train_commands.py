"""Trainer commands: `triage train`, `estimate`, `predict`, `evaluate` and `synth` (thin calls
into trainer/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    """Add the trainer's commands to the `triage` app."""
    app.command("train")(train)
    app.command("estimate")(estimate)
    app.command("predict")(predict)
    app.command("evaluate")(evaluate)
    app.command("synth")(synth)


DATA_HELP = (
    "Scans: images+labels .npz, MedMNIST-style .npz, `images.npy,labels.npy`, "
    "or a folder of class sub-folders (0/1/2) of PNG/JPEG/DICOM."
)
DataOption = Annotated[str, typer.Option("--data", help=DATA_HELP)]
GroupsOption = Annotated[
    Path | None, typer.Option("--groups", help="CSV with one row per image naming its group.")
]
GroupColumnOption = Annotated[
    str | None, typer.Option("--group-column", help="The CSV column holding the group.")
]


CandidatesOption = Annotated[
    str | None,
    typer.Option(
        "--candidates",
        help="Comma-separated candidate names (default: all of them and ensemble_best); the "
        "one with the best out-of-fold macro F1 is published.",
    ),
]
EpochsOption = Annotated[
    int | None,
    typer.Option("--epochs", min=1, help="Epochs per network (default: each candidate's own)."),
]
FoldsOption = Annotated[
    int,
    typer.Option(
        "--folds",
        min=0,
        help="Cross-fit folds of the patients (also the nested estimate's; at least 3); 0: a "
        "quick 2-fold run without an estimate.",
    ),
]
RecallOption = Annotated[
    float | None,
    typer.Option("--urgent-recall", help="Target urgent recall (default TRIAGE_URGENT_RECALL)."),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed for folds, balancing, weights.")]


def train(
    data: DataOption,
    out: Annotated[
        Path | None, typer.Option("--out", help="Model root (default: TRIAGE_MODEL_DIR).")
    ] = None,
    groups: GroupsOption = None,
    group_column: GroupColumnOption = None,
    epochs: EpochsOption = None,
    seed: SeedOption = 0,
    candidates: CandidatesOption = None,
    urgent_recall: RecallOption = None,
    folds: FoldsOption = 3,
) -> None:
    """Train every candidate, publish the best by out-of-fold macro F1, with what new patients
    should show (`expected_unseen`, from a recorded estimate or both designs run now)."""
    from trainer.train import run_training

    try:
        run_training(
            data, out=out, epochs=epochs, seed=seed, candidates=_names(candidates),
            groups=groups, group_column=group_column, urgent_recall=urgent_recall, folds=folds,
        )  # fmt: skip
    except ValueError as error:
        _fail(error)


def estimate(
    data: DataOption,
    groups: GroupsOption = None,
    group_column: GroupColumnOption = None,
    epochs: EpochsOption = None,
    seed: SeedOption = 0,
    candidates: CandidatesOption = None,
    urgent_recall: RecallOption = None,
    folds: FoldsOption = 3,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Model root to record it in (default: TRIAGE_MODEL_DIR)."),
    ] = None,
) -> None:
    """Both validation designs of the training pipeline (nested group-aware, temporal):
    recorded under MODEL_ROOT/estimates/, where `triage train` with the same settings finds it."""
    from schemas.settings import get_settings
    from trainer.estimate import expected_unseen
    from trainer.records import FOLDER, write_record
    from trainer.train import describe, make_record, prepare

    if folds == 0:
        _fail(ValueError("--folds 0 trains without an estimate: give at least 3 folds"))
    settings = get_settings()
    console = Console()
    recall = urgent_recall if urgent_recall is not None else settings.urgent_recall
    root = Path(out) if out is not None else settings.resolved_model_dir
    try:
        run = prepare(
            data, groups, group_column, _names(candidates), folds, epochs, seed, recall, console,
        )  # fmt: skip
        record = make_record(run)
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    path = write_record(root / FOLDER, run.key(), record)
    for design in record["designs"]:
        console.print(f"{design['design']}: winners {design['winners']}")
    unseen = expected_unseen(record["designs"], record["basis"])
    console.print(f"expected on new patients: {describe(unseen)} ({unseen.design})")
    for warning in unseen.warnings:
        console.print(f"WARNING: {warning}", markup=False)
    console.print(f"recorded {path} ({record['seconds']:.0f} s)")


def _names(candidates: str | None) -> list[str] | None:
    return [name.strip() for name in candidates.split(",")] if candidates else None


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
    data: DataOption,
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
