"""Processes started once per test session that run `lit-activation` commands on one or several CPU ranks (gloo).

A spawned process spends about 8 s of CPU importing torch, Lightning and transformers before it does
anything, and a run on four ranks starts four of them. The pool's processes (tests/helpers/pool_worker.py)
import once; each command is sent to the first `devices` of them, which take part as the ranks of a
new process group, as processes that a launcher such as torchrun started (Lightning reads LOCAL_RANK,
NODE_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT and launches nothing). After a command each worker
destroys its process group and is as before; worker r is always rank r, and a one-process command runs
on worker 0. A command that fails or hangs has its workers replaced, so that the next one starts clean.

    from tests.helpers.processes import cli
    run_dir, stderr = cli(tmp_path, "four", args, devices=4, strategy=sharded(2, 2))

`cli` sends its command here; `fresh=True` starts new processes instead, for what a reused process
would change (its resident memory, a process killed on purpose). The pool starts on first use and
ends with the session (tests/conftest.py), or when the tests' process goes (its workers read the end
of their input and exit).
"""

from __future__ import annotations

import json
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import ROOT, child_env

WORKERS = 4  # the widest layout the tests run: DP=2 × TP=2
GRACE_S = 90  # how long the other ranks of a failed command may take to notice (the heartbeat's 60 s and some)


@dataclass
class Ran:
    """What one rank of a command did: its exit status and what it printed."""

    code: int
    stdout: str
    stderr: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pool:
    """WORKERS processes that run commands as ranks; started when first needed."""

    def __init__(self) -> None:
        self.workers: list[subprocess.Popen | None] = [None] * WORKERS
        self.logs: Path | None = None  # what the ranks print, one file each per command

    def _worker(self, rank: int) -> subprocess.Popen:
        if self.workers[rank] is None or self.workers[rank].poll() is not None:
            self.workers[rank] = subprocess.Popen(
                [sys.executable, "-m", "tests.helpers.pool_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                env=child_env(), cwd=ROOT,
            )
        return self.workers[rank]

    def _replace(self, rank: int) -> None:
        worker = self.workers[rank]
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        self.workers[rank] = None

    def run(self, args: list[str], devices: int, cwd: Path, timeout: float = 600, nodes: int = 1) -> list[Ran]:
        """`lit-activation <args>` in `cwd` on `devices` ranks of each of `nodes` simulated nodes (node r // devices
        holds rank r, as its launcher would number them); what each rank did, rank 0 first."""
        workers = [self._worker(rank) for rank in range(devices * nodes)]
        for worker in workers:  # a new worker says "ready" once it has imported everything
            if not hasattr(worker, "ready"):
                line = worker.stdout.readline()
                assert line == "ready\n", f"a pool worker did not start: {line!r}"
                worker.ready = True
        self.logs = self.logs or Path(tempfile.mkdtemp(prefix="lit-activation-pool-"))
        port, logs = free_port(), self.logs
        for rank, worker in enumerate(workers):
            env = {"LOCAL_RANK": str(rank % devices), "NODE_RANK": str(rank // devices), "WORLD_SIZE": str(len(workers)),
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
            job = {"args": args, "cwd": str(cwd), "env": env if len(workers) > 1 else {},
                   "stdout": str(logs / f"{port}.{rank}.out"), "stderr": str(logs / f"{port}.{rank}.err")}
            worker.stdin.write(json.dumps(job) + "\n")
            worker.stdin.flush()
        codes = self._replies(workers, timeout)
        for rank, code in enumerate(codes):
            if code != 0:  # failed, or still waiting for a rank that did: a new process next time
                self._replace(rank)
        return [Ran(1 if code is None else code, (logs / f"{port}.{rank}.out").read_text(), (logs / f"{port}.{rank}.err").read_text())
                for rank, code in enumerate(codes)]

    def _replies(self, workers: list[subprocess.Popen], timeout: float) -> list[int | None]:
        """Each worker's exit status for the command; None for one that had not answered in time
        (`timeout`, or GRACE_S after another rank failed)."""
        codes: list[int | None] = [None] * len(workers)
        with selectors.DefaultSelector() as waiting:
            for rank, worker in enumerate(workers):
                waiting.register(worker.stdout, selectors.EVENT_READ, rank)
            deadline = time.monotonic() + timeout
            while waiting.get_map():
                left = deadline - time.monotonic()
                events = waiting.select(max(left, 0)) if left > 0 else []
                if not events:
                    break
                for key, _ in events:
                    line = key.fileobj.readline()
                    waiting.unregister(key.fileobj)
                    codes[key.data] = json.loads(line)["code"] if line else 1  # no line: the worker died
                    if codes[key.data] != 0:
                        deadline = min(deadline, time.monotonic() + GRACE_S)
        return codes

    def close(self) -> None:
        for worker in self.workers:
            if worker is not None and worker.poll() is None:
                worker.stdin.close()  # the worker exits at the end of its input
        for rank, worker in enumerate(self.workers):
            if worker is not None:
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self._replace(rank)
        self.workers = [None] * WORKERS
        if self.logs is not None:
            shutil.rmtree(self.logs, ignore_errors=True)
            self.logs = None


POOL = Pool()  # the session's; tests/conftest.py closes it at the end
