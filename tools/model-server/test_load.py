"""The load test (load_test.py, `npx projen test:load`) in seconds: lowCost served with continuous batching, and the
static-batching template (three workers, batch 2, TorchServe's bounded queue and the 20 s limit), each at its capacity
and then at three times it, the device at a tenth of its calibrated time per step. Every attempt is answered 200 within
60 s (simulated) or refused 503 within 1 s (with Retry-After when served step by step); the device's record shows no
sequence generating past its caller's deadline; no worker restarts. The throughput comparison is left to the full run:
at a tenth of the device's time the host's own time per step (not scaled) weighs ten times as much."""

from __future__ import annotations

import pytest

from load_test import load_test



@pytest.mark.xdist_group("load-lowCost")
def test_three_times_the_capacity_is_answered_in_time_or_refused_at_once_and_nothing_runs_past_its_deadline():
    row = load_test("lowCost", simulated_seconds=30, scale=0.1, warmup=10)
    overload = row["overload_phase"]
    assert overload["refused"] > 0 and overload["answered"] > 0, row  # both paths were taken
    for phase in (row["capacity_phase"], overload):
        assert phase["answered_late"] == phase["refused_late"] == phase["refused_without_retry_after"] == 0, row
        assert phase["other"] == [], row
    assert row["deadline_violations"] == 0 and row["worker_restarts"] == 0, row


@pytest.mark.xdist_group("load-staticBatching")
def test_static_batches_at_three_times_the_capacity_are_answered_in_time_or_refused_at_once_by_the_bounded_queue():
    # Without the bounded queue (TorchServe's default holds 100) nothing is refused, and a request waits for batches
    # behind batches: its answer comes after SageMaker's 60 s, or its generation runs past its caller's deadline.
    row = load_test("staticBatching", simulated_seconds=60, scale=0.1, warmup=10)
    overload = row["overload_phase"]
    assert overload["refused"] > 0 and overload["answered"] > 0, row
    for phase in (row["capacity_phase"], overload):
        assert phase["answered_late"] == phase["refused_late"] == 0, row
        assert phase["other"] == [], row
    assert row["deadline_violations"] == 0 and row["worker_restarts"] == 0, row
