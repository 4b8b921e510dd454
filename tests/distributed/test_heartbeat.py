"""The heartbeat's rule, on one store and a clock under the test's control: a rank whose beats stop
for longer than the limit is lost; a rank that said it is done never is."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.distributed as dist

from lit_activation.distributed import heartbeat
from lit_activation.distributed.heartbeat import Heartbeat
from tests.helpers import child_env


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


OBSERVED = """
import os, subprocess, sys, time
import torch.distributed as dist
from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
from lit_activation.distributed.heartbeat import Heartbeat

alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
dead = subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
dead.wait()
observer = _ChildProcessObserver(main_pid=os.getpid(), child_processes=[alive, dead], sleep_period=0)
Heartbeat("resume with --resume runs/x/version_0", dist.HashStore(), 0, 3).observe_launcher(observer)
print(alive.pid, flush=True)
observer.start()
time.sleep(60)  # Lightning's own observer would SIGKILL this process, silently
"""


def test_lightnings_launcher_observer_names_the_child_it_saw_end_and_stops_every_rank(tmp_path):
    done = subprocess.run([sys.executable, "-c", OBSERVED], capture_output=True, text=True, timeout=120, env=child_env())
    assert done.returncode == 1, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: lost rank 2 of 3 (killed by SIGKILL: its process ended, e.g. killed for memory, or its node was lost); "
        "rank 0 stops too. Results written before are kept: resume with --resume runs/x/version_0"
    ]
    alive = Path(f"/proc/{done.stdout.split()[0]}/stat")
    for _ in range(50):  # the other child was killed too (reaped by init, or a zombie until then)
        if not alive.exists() or alive.read_text().split(")")[-1].split()[0] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail("the launcher's other child is still running")


def test_an_exit_code_in_words():
    assert heartbeat.describe_exit(-9) == "killed by SIGKILL"
    assert heartbeat.describe_exit(1) == "exit code 1"
