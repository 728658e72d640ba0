"""A worker with N pool processes gives each cores / N TensorFlow threads, unless told."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from worker.app import _share_cores


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        monkeypatch.setenv(name, "recorded")  # so that teardown restores what was there
        monkeypatch.delenv(name)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)))
    return monkeypatch


@pytest.mark.parametrize(("concurrency", "threads"), [(2, "4"), (8, "1"), (16, "1"), (3, "2")])
def test_pool_processes_share_the_cores(clean_env, concurrency: int, threads: str) -> None:  # noqa: ANN001
    _share_cores(SimpleNamespace(concurrency=concurrency))
    assert os.environ["TF_NUM_INTRAOP_THREADS"] == threads
    assert os.environ["TF_NUM_INTEROP_THREADS"] == "1"


@pytest.mark.parametrize("concurrency", [1, "auto", None])
def test_one_process_keeps_tensorflows_default(clean_env, concurrency: object) -> None:  # noqa: ANN001
    _share_cores(SimpleNamespace(concurrency=concurrency))
    assert "TF_NUM_INTRAOP_THREADS" not in os.environ


def test_an_explicit_setting_wins(clean_env) -> None:  # noqa: ANN001
    clean_env.setenv("TF_NUM_INTRAOP_THREADS", "3")
    _share_cores(SimpleNamespace(concurrency=4))
    assert os.environ["TF_NUM_INTRAOP_THREADS"] == "3"
    assert "TF_NUM_INTEROP_THREADS" not in os.environ
