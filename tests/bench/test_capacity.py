"""The capacity model's projection: pure arithmetic on measured per-scan costs."""

from __future__ import annotations

import pytest

from bench.capacity import TICK_US, at_least_a_tick, costs_from, medians, project

COSTS = {
    "model_scans_per_s_per_core": 4000.0,  # 250 µs per scan
    "worker_overhead_us_per_scan": 250.0,  # -> 500 µs per scan per core, 2,000 scans/s per core
    "pg_server_cpu_us_per_scan": 200.0,  # 8 cores -> 40,000 scans/s
    "redis_cpu_us_per_scan": 1.0,  # -> 1,000,000 scans/s
}


def test_capacities_follow_the_documented_arithmetic() -> None:
    (row,) = project(COSTS, hosts=(3,), cores_per_host=8, db_cores=8)
    assert row["worker_capacity"] == pytest.approx(3 * 8 * 2000)
    assert row["postgresql_capacity"] == pytest.approx(40_000)
    assert row["redis_capacity"] == pytest.approx(1_000_000)
    assert row["scans_per_s"] == pytest.approx(40_000)
    assert row["bottleneck"] == "postgresql"


def test_bottleneck_moves_from_hosts_to_postgresql_as_hosts_are_added() -> None:
    costly_db = dict(COSTS, pg_server_cpu_us_per_scan=400.0)  # 20,000 scans/s
    rows = project(costly_db, hosts=(1, 4, 16, 64), cores_per_host=8, db_cores=8)
    assert [row["bottleneck"] for row in rows] == [
        "workers",
        "postgresql",
        "postgresql",
        "postgresql",
    ]
    assert rows[0]["scans_per_s"] == pytest.approx(16_000)
    assert [row["scans_per_s"] for row in rows[1:]] == pytest.approx([20_000] * 3)


def test_more_database_cores_raise_the_postgresql_ceiling() -> None:
    (small,) = project(COSTS, hosts=(64,), db_cores=8)
    (large,) = project(COSTS, hosts=(64,), db_cores=32)
    assert large["postgresql_capacity"] == pytest.approx(4 * small["postgresql_capacity"])
    assert large["scans_per_s"] > small["scans_per_s"]


def test_redis_is_the_bottleneck_when_its_cost_dominates() -> None:
    rows = project(
        dict(COSTS, redis_cpu_us_per_scan=100.0), hosts=(1, 64), cores_per_host=2, db_cores=64
    )
    assert [row["bottleneck"] for row in rows] == ["workers", "redis"]
    assert rows[1]["scans_per_s"] == pytest.approx(10_000)


@pytest.mark.parametrize("pg_cost", [5.0, 50.0, 500.0, 5000.0])
def test_throughput_never_exceeds_any_capacity(pg_cost: float) -> None:
    for row in project(dict(COSTS, pg_server_cpu_us_per_scan=pg_cost), cores_per_host=2):
        capacities = (row["worker_capacity"], row["postgresql_capacity"], row["redis_capacity"])
        assert row["scans_per_s"] == pytest.approx(min(capacities))
        assert all(row["scans_per_s"] <= capacity for capacity in capacities)


def test_connection_count_is_flagged_past_max_connections() -> None:
    rows = project(COSTS, hosts=(4, 16, 64), cores_per_host=8)
    assert [row["pg_connections"] for row in rows] == [32, 128, 512]
    assert [row["over_max_connections"] for row in rows] == [False, True, True]


def test_costs_from_measurements_charges_job_wall_time_and_broker_client_to_workers() -> None:
    costs = costs_from(
        {"scans_per_s_per_core": 5000.0},
        {"job_wall_us": 200.0, "server_cpu_us": 300.0},
        {"batch": 256, "consume_client_cpu_us_per_job": 512.0, "redis_cpu_us_per_job": 256.0},
    )
    assert costs == {
        "model_scans_per_s_per_core": 5000.0,
        "worker_overhead_us_per_scan": pytest.approx(202.0),
        "pg_server_cpu_us_per_scan": 300.0,
        "redis_cpu_us_per_scan": pytest.approx(1.0),
    }


@pytest.mark.parametrize("total_us", [0.0, -3_000.0, TICK_US / 2])
def test_a_cost_under_one_clock_tick_is_raised_to_a_tick_and_flagged(total_us: float) -> None:
    """A quick run's Redis or PostgreSQL can move its CPU counters by no tick at all (CI saw
    a ZeroDivisionError in the projection): the cost becomes one tick over the units."""
    per_unit, raised = at_least_a_tick(total_us, 50)
    assert raised
    assert per_unit == pytest.approx(TICK_US / 50)
    (row,) = project(dict(COSTS, redis_cpu_us_per_scan=per_unit / 256), hosts=(1,))
    assert row["redis_capacity"] > 0


def test_a_cost_of_many_ticks_is_kept_as_measured() -> None:
    assert at_least_a_tick(7 * TICK_US, 50) == (pytest.approx(7 * TICK_US / 50), False)


def test_medians_take_numbers_median_and_flags_any() -> None:
    runs = [
        {"cost": 1.0, "raised": False},
        {"cost": 5.0, "raised": True},
        {"cost": 2.0, "raised": False},
    ]
    assert medians(runs) == {"cost": 2.0, "raised": True}
