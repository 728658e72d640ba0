from __future__ import annotations

from pathlib import Path

from trainer.publish import reserve_version


def test_reserve_version_never_hands_out_a_taken_name(tmp_path: Path) -> None:
    # the same data trained twice within one second (a reused nested estimate is that fast)
    first, first_staging = reserve_version(tmp_path, "abcdef123456")
    first_staging.rename(tmp_path / first)  # published
    second, second_staging = reserve_version(tmp_path, "abcdef123456")
    third, third_staging = reserve_version(tmp_path, "abcdef123456")  # second still staging
    names = {first, second, third}
    assert len(names) == 3, names
    assert all(name.split("-")[2] == "abcdef" for name in names)
    assert second_staging.is_dir() and third_staging.is_dir()
