"""The default recipe, trained as `triage train` trains it, served end to end.

Every candidate + `ensemble_best`, selected by out-of-fold macro F1 (`--folds 0`: two folds,
no estimate), trained on phantoms; then fresh phantoms of another seed go through the CLI,
Redis and real worker processes into a SQLite ledger. The urgent phantoms must reach the
urgent worklist and most healthy ones must stay off it: a recipe that flags every phantom
(or none) fails here. The deterministic pipeline checks use the brightness model
(tests/fixtures_model.py); this one is about the model users get.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image

from ledger.database import engine_for
from schemas.model_card import read_card, resolve_model_dir
from schemas.settings import get_settings
from schemas.tables import Result, Scan
from tests.integration.conftest import wait_for
from triage.demo import ledger_state

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

TRAIN_SCANS = 1000  # half the demo's: about two minutes on two cores (TRAINING.md, "Phantoms")
SERVED_SCANS = 120
SERVED_MIX = (0.5, 0.25, 0.25)
# Measured offline on 600 such phantoms: 99-100 % of urgent and 30-32 % of healthy ones flagged.
MIN_URGENT_RECALL = 0.9  # urgent phantoms on the worklist
MAX_HEALTHY_FLAGGED = 0.5  # healthy phantoms on it (the seed's recipe flagged all of them)


@pytest.fixture(scope="module")
def default_model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default recipe trained on phantoms and published (once for the module)."""
    from trainer.phantom_model import publish_on_phantoms

    root = tmp_path_factory.mktemp("default-model")
    publish_on_phantoms(root, TRAIN_SCANS, seed=0)
    return root


def write_phantom_files(folder: Path) -> dict[str, int]:
    """Fresh phantoms (another seed than training) as PNG files; accession -> true class."""
    from trainer.synth import make_phantoms

    images, labels = make_phantoms(SERVED_SCANS, SERVED_MIX, seed=12)
    folder.mkdir(parents=True)
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"PH{index:04d}.png")
    return {f"PH{index:04d}": int(label) for index, label in enumerate(labels)}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_default_recipe_trained_on_phantoms_puts_urgent_ones_on_the_worklist(
    pipeline_factory, database_url: str, default_model_root: Path, tmp_path: Path
) -> None:
    card = read_card(resolve_model_dir(default_model_root))
    assert card.synthetic_data and len(card.candidates) == 7  # six candidates + the ensemble
    assert card.selected_candidate == max(card.candidates, key=lambda r: r["macro_f1"])["name"]
    pipeline = pipeline_factory(
        database_url, batch_size=32, env={"TRIAGE_MODEL_DIR": str(default_model_root)}
    )
    truth = write_phantom_files(tmp_path / "incoming")
    pipeline.start_worker("urgent", "urgent")
    pipeline.start_worker("stat,scans", "routine")

    enqueued = pipeline.triage("enqueue", str(tmp_path / "incoming"), "--accession-from-filename")
    assert enqueued.returncode == 0, enqueued.stderr
    engine = engine_for(get_settings().resolved_database_url)

    def settled() -> bool:  # every scan classified, every study decided and escalated
        with engine.connect() as connection:
            ids = connection.scalars(sa.select(Scan.id)).all()
        state = ledger_state(engine, list(ids))
        return state["finished"] == SERVED_SCANS and not (
            state["undecided"] + state["escalations_waiting"]
        )

    wait_for(settled, f"{SERVED_SCANS} phantoms classified and escalated", timeout=300)
    with engine.connect() as connection:
        done = connection.scalar(sa.select(sa.func.count()).where(Scan.status == "done"))
        versions = set(connection.scalars(sa.select(Result.model_version)).all())
    assert done == SERVED_SCANS and versions == {card.version}

    listed = {case["accession"] for case in json.loads(pipeline.triage("urgent", "--json").stdout)}
    urgent = {accession for accession, label in truth.items() if label == 2}
    healthy = {accession for accession, label in truth.items() if label == 0}
    recall = len(urgent & listed) / len(urgent)
    healthy_flagged = len(healthy & listed) / len(healthy)
    assert recall >= MIN_URGENT_RECALL, f"urgent recall {recall:.2f} ({card.selected_candidate})"
    assert healthy_flagged <= MAX_HEALTHY_FLAGGED, (
        f"{healthy_flagged:.0%} of healthy phantoms flagged ({card.selected_candidate})"
    )
