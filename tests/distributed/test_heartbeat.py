"""The heartbeat's rule, on one store and a clock under the test's control: a rank whose beats stop
for longer than the limit is lost; a rank that said it is done never is."""

from __future__ import annotations

import pytest
import torch.distributed as dist

from lit_activation.distributed import heartbeat
from lit_activation.distributed.heartbeat import Heartbeat


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    now = [100.0]
    monkeypatch.setattr(heartbeat.time, "monotonic", lambda: now[0])
    return now


def ranks(world: int) -> list[Heartbeat]:
    store = dist.HashStore()
    return [Heartbeat("resume with --resume runs/x/version_0", store, rank, world) for rank in range(world)]


def test_a_rank_whose_beats_stop_is_lost_just_past_the_limit(clock):
    zero, one, two = ranks(3)
    for _ in range(3):
        for r in (zero, one, two):
            r.beat()
        clock[0] += 1.0
    last_seen = clock[0]  # rank 1 stops: the next look is the last to see its count move (its final beat)
    for _ in range(5):  # the others go on
        zero.beat()
        two.beat()
        clock[0] += 1.0
    zero.beat()
    silent_for = clock[0] - last_seen
    assert zero.silent(silent_for - 0.001) == [1]  # just past the limit: lost
    assert zero.silent(silent_for) == []  # at the limit: not yet
    assert two.silent(silent_for - 0.001) == [1]


def test_a_rank_that_is_done_is_never_lost(clock):
    zero, one = ranks(2)
    zero.beat()
    one.beat()
    one.stop()
    clock[0] += 1000.0
    zero.beat()
    assert zero.silent(1.0) == []


def test_the_line_names_the_lost_ranks_and_the_way_to_resume():
    zero, _ = ranks(2)
    line = zero.message([1], "no heartbeat for 60 s")
    assert line.startswith("lost rank 1 of 2 (no heartbeat for 60 s: its process ended")
    assert line.endswith("rank 0 stops too. Results written before are kept: resume with --resume runs/x/version_0")
