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


def train(
    data: DataOption,
    out: Annotated[
        Path | None, typer.Option("--out", help="Model root (default: TRIAGE_MODEL_DIR).")
    ] = None,
    groups: GroupsOption = None,
    group_column: GroupColumnOption = None,
    epochs: Annotated[
        int, typer.Option("--epochs", min=1, help="Most epochs per CNN (hog_heads: unused).")
    ] = 60,
    seed: Annotated[int, typer.Option("--seed", help="Seed for split, balancing and weights.")] = 0,
    candidates: Annotated[
        str | None,
        typer.Option(
            "--candidates",
            help="Comma-separated candidate names (default: hog_heads, which is published "
            "alone with its nested estimate; CNN names are compared on a validation split).",
        ),
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
            "over its folds (hog_heads: linear heads over all patients; CNNs: over train+val). "
            "0: one copy (hog_heads: one head fitted on everything; CNNs: as trained).",
        ),
    ] = 4,
) -> None:
    """Train and publish: by default the hog_heads recipe, every choice made inside group
    folds, with what new patients should show (`expected_unseen`) on its card."""
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


def estimate(
    data: DataOption,
    groups: GroupsOption = None,
    group_column: GroupColumnOption = None,
    urgent_recall: Annotated[
        float | None,
        typer.Option(
            "--urgent-recall", help="Target urgent recall (default TRIAGE_URGENT_RECALL)."
        ),
    ] = None,
    folds: Annotated[
        int, typer.Option("--folds", min=0, help="As for `triage train` (heads per model).")
    ] = 4,
    deals: Annotated[
        int, typer.Option("--deals", min=1, help="Deals of the patients into outer folds.")
    ] = 3,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder to record it in (default: trainer/estimates/)."),
    ] = None,
) -> None:
    """Nested group cross-validation of the default recipe (hog_heads): what new patients
    should show. `triage train` on the same data reuses the recorded estimate."""
    import json

    from schemas.settings import get_settings
    from trainer.data import load_groups, load_scans
    from trainer.fit import configure_tensorflow
    from trainer.heads import scan_features
    from trainer.train_heads import ESTIMATES_DIR, compute_estimate, estimate_key, joined_groups

    if folds == 1:
        _fail(ValueError("--folds must be 0 or at least 2"))
    if groups is not None and not group_column:
        _fail(ValueError("--groups needs --group-column naming the group column"))
    try:
        scans = load_scans(data, require_labels=True)
        group_ids = load_groups(groups, group_column, len(scans.images)) if groups else None
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    recall = urgent_recall if urgent_recall is not None else get_settings().urgent_recall
    configure_tensorflow()
    console = Console()
    joined = joined_groups(scans.images, group_ids, console)
    features = scan_features(scans.images, scans.labels, joined, studies=group_ids)
    fingerprint = scans.fingerprint()
    record = compute_estimate(features, fingerprint, recall, folds, seeds=tuple(range(deals)))
    folder = Path(out) if out is not None else ESTIMATES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / estimate_key(fingerprint, group_ids is not None, recall, folds)
    path.write_text(json.dumps(record, indent=2) + "\n")
    _print_estimate(console, record, path)


def _print_estimate(console: Console, record: dict, path: Path) -> None:
    """The pooled range, one line per deal, and where the record was written."""
    from trainer.heads import describe_range

    console.print(f"expected on new patients: {describe_range(record['expected_unseen'])}")
    for deal in record["expected_unseen"]["per_deal"]:
        console.print(
            f"  deal {deal['seed']}: macro F1 {deal['macro_f1']:.3f}, urgent recall "
            f"{deal['urgent_recall']:.3f}, precision {deal['urgent_precision']:.3f}, healthy "
            f"flagged {deal['healthy_flagged']:.1%}"
            + (
                f"; studies: recall {deal['study_recall']:.3f}, precision "
                f"{deal['study_precision']:.3f}"
                if "study_recall" in deal
                else ""
            )
        )
    console.print(f"recorded {path} ({record['seconds']:.0f} s)")


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
