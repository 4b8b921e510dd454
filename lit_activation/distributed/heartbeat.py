"""Lost ranks: a rank that dies (killed for memory, a lost node) is named, and the others stop within a bounded time.

Every rank of a multi-process run counts beats into the process group's store from a daemon thread
(`Heartbeat`), and watches the others' counts with its own clock (no clock is compared across
nodes). A rank whose count has not moved for `LOST_AFTER_S` seconds is lost: the watcher prints one
line naming it and ends this process, even when the main thread waits inside a collective (NCCL
would otherwise wait for its own timeout). When a collective fails first (gloo notices a closed
connection at once), `lost_ranks` names the silent ranks for the same line. When Lightning's own
launcher started the ranks (one node, several devices), its observer thread in rank 0's process
kills every process within seconds of a child's death; `observe_launcher` makes it say the line
first, naming the child it saw end. Results already written stay as they are; `predict --resume`
continues from them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

import torch.distributed as dist

INTERVAL_S = float(os.environ.get("LIT_ACTIVATION_HEARTBEAT_S", "5"))  # seconds between beats
LOST_AFTER_S = float(os.environ.get("LIT_ACTIVATION_LOST_AFTER_S", "60"))  # seconds without a beat: that rank is lost
KEY = "lit_activation/heartbeat/{}"
DONE = "done"


class Heartbeat:
    """This rank's beats, and what it has seen of the others' (last count and when it changed)."""

    active: Heartbeat | None = None  # the running one, for the error line after a failed collective

    def __init__(self, resume_hint: str, store: dist.Store | None = None, rank: int | None = None, world: int | None = None) -> None:
        self.rank = dist.get_rank() if rank is None else rank
        self.world = dist.get_world_size() if world is None else world
        self.store = store or dist.distributed_c10d._get_default_store()  # the rendezvous store every rank reaches
        self.resume_hint = resume_hint
        now = time.monotonic()
        self.seen = {r: (-1, now) for r in range(self.world) if r != self.rank}
        self.beats, self.stopped = 0, threading.Event()
        self.reported = threading.Lock()

    @classmethod
    def start(cls, resume_hint: str) -> Heartbeat | None:
        """Start beating and watching (once per process), in a multi-process run; None otherwise."""
        if cls.active is None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            cls.active = cls(resume_hint)
            threading.Thread(target=cls.active._run, name="lit-activation-heartbeat", daemon=True).start()
            observer = next((t for t in threading.enumerate() if t.name == LAUNCHER_OBSERVER), None)
            if observer is not None:
                cls.active.observe_launcher(observer)
        return cls.active

    def stop(self) -> None:
        """This rank is done: it stops beating and says so, so that no other rank takes it for lost."""
        self.stopped.set()
        with contextlib.suppress(Exception):  # the store went first (rank 0 ended): nobody is left to tell
            self.store.set(KEY.format(self.rank), DONE)
        if Heartbeat.active is self:
            Heartbeat.active = None

    def _run(self) -> None:
        while not self.stopped.wait(INTERVAL_S):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - the store itself is gone: it lived with rank 0, or its node
                self.report([0], "the store it hosts cannot be reached")
                return
            lost = self.silent(LOST_AFTER_S)
            if lost:
                self.report(lost, f"no heartbeat for {LOST_AFTER_S:g} s")
                return

    def beat(self) -> None:
        """Count one beat, and note whose count moved since the last look."""
        self.beats += 1
        self.store.set(KEY.format(self.rank), str(self.beats))
        now = time.monotonic()
        for rank, (count, _) in list(self.seen.items()):
            key = KEY.format(rank)
            current = self.store.get(key).decode() if self.store.check([key]) else "-1"
            if current == DONE:  # it finished its part of the run: never lost
                del self.seen[rank]
            elif int(current) != count:
                self.seen[rank] = (int(current), now)

    def silent(self, seconds: float) -> list[int]:
        """The ranks whose beats have not moved for `seconds`."""
        now = time.monotonic()
        return sorted(rank for rank, (_, since) in self.seen.items() if now - since > seconds)

    def lost_ranks(self) -> list[int]:
        """After a collective failed: watch the beats for three intervals; the ranks that stayed silent."""
        start = time.monotonic()
        while time.monotonic() - start < 3 * INTERVAL_S:
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - as in _run
                return [0]
            time.sleep(INTERVAL_S / 4)
        return self.silent(2 * INTERVAL_S)

    def message(self, lost: list[int], why: str) -> str:
        names = ", ".join(map(str, lost)) if lost else "unknown (every other rank still beats)"
        return (
            f"lost rank {names} of {self.world} ({why}: its process ended, e.g. killed for memory, or its node was lost); "
            f"rank {self.rank} stops too. Results written before are kept: {self.resume_hint}"
        )

    def explain(self) -> str | None:
        """After a collective failed in the main thread: the line naming the lost ranks (None when none
        is silent, or while the watcher says it and ends the process)."""
        lost = self.lost_ranks() if not self.reported.locked() else []
        if lost and self.reported.acquire(blocking=False):  # taken only now: the launcher's observer may say it meanwhile
            return self.message(lost, f"no heartbeat for {2 * INTERVAL_S:g} s")
        if self.reported.locked():
            time.sleep(3 * INTERVAL_S)  # another thread is saying it and ending the process
        return None

    def report(self, lost: list[int], why: str) -> None:
        """Say it in one line and end this process (from the watcher: the main thread may be stuck in a collective)."""
        if self.reported.acquire(blocking=False):
            print(f"error: {self.message(lost, why)}", file=sys.stderr, flush=True)
            os._exit(1)

    def observe_launcher(self, observer: threading.Thread) -> None:
        """Lightning's launcher observer (rank 0's process, which started the node's other ranks as its
        children) kills every process at once when a child ends with an error, before a heartbeat can
        be missed: make it say the line first, naming the child it saw end, then stop as it would.
        Its children are this node's next local ranks, so child i is global rank self.rank + i + 1."""
        children = getattr(observer, "_child_processes", None)
        if children is None or not hasattr(observer, "_terminate_all"):  # another Lightning: its own way stays
            return

        def name_then_terminate() -> None:
            ended = [(self.rank + i + 1, child.returncode) for i, child in enumerate(children) if child.returncode]
            if self.reported.acquire(blocking=False):
                codes = describe_exit(ended[0][1]) if len(ended) == 1 else ", ".join(f"rank {r} {describe_exit(c)}" for r, c in ended)
                print(f"error: {self.message([rank for rank, _ in ended], codes)}", file=sys.stderr, flush=True)
            else:
                time.sleep(1.0)  # the main thread or the watcher is saying it: let its line out first
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGKILL)  # as Lightning does: a rank inside a collective ignores SIGTERM
            os._exit(1)

        observer._terminate_all = name_then_terminate  # type: ignore[attr-defined]


LAUNCHER_OBSERVER = "child-process-observer"  # the thread name of Lightning's _ChildProcessObserver


def describe_exit(code: int) -> str:
    """A process's return code in words: -9 is 'killed by SIGKILL'."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
