from __future__ import annotations

from pathlib import Path

from trainer.records import find_record, record_key, record_places, write_record


def test_a_record_is_found_only_for_its_data_and_settings(tmp_path: Path) -> None:
    key = record_key("f" * 64, ["a", "b"], 4, None, 0.95, True)
    assert key != record_key("f" * 64, ["a"], 4, None, 0.95, True)
    assert key != record_key("f" * 64, ["a", "b"], 3, None, 0.95, True)
    assert key == record_key("f" * 64, ["b", "a"], 4, None, 0.95, True)
    write_record(tmp_path / "estimates", key, {"data_fingerprint": "f" * 64, "designs": []})
    found = find_record(key, "f" * 64, [tmp_path / "nowhere", tmp_path / "estimates"])
    assert found is not None and found["path"].endswith(key)
    assert find_record(key, "e" * 64, [tmp_path / "estimates"]) is None


def test_records_live_in_the_model_root_or_beside_the_data(tmp_path: Path) -> None:
    data = tmp_path / "data" / "scans.npz"
    data.parent.mkdir()
    data.write_bytes(b"")
    places = record_places(tmp_path / "models", str(data))
    assert places == [tmp_path / "models" / "estimates", data.parent.resolve() / "estimates"]
    assert record_places(tmp_path / "models", ("arrays",)) == [tmp_path / "models" / "estimates"]
