"""One process of the test pool (tests/helpers/pool.py): it imports the command once, then runs the
commands it is sent, one at a time, as one rank of a gloo process group or alone.

Protocol: one JSON job per line on stdin ({"args", "cwd", "env", "stdout", "stderr"}), one JSON reply
per line on the stdout it was started with ({"code": exit status}); "ready" first, once the imports
are done. During a job, file descriptors 1 and 2 go to the job's files. It ends at the end of stdin.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import torch.distributed as dist

from lit_activation.cli import build_cli, main  # noqa: F401 - Lightning and every class the command offers, imported once
from lit_activation.distributed.heartbeat import Heartbeat
from tests.helpers import tokens

tokens.install()  # as in the tests' own process (conftest.py)


def run(job: dict) -> int:
    """`lit-activation <args>` in `cwd` with `env` added; its exit status. Afterwards the process is as
    before: its directory, environment, process group (destroyed) and heartbeat (stopped)."""
    cwd, environ = os.getcwd(), dict(os.environ)
    saved = os.dup(1), os.dup(2)
    os.chdir(job["cwd"])
    os.environ.update(job["env"])
    with open(job["stdout"], "w") as out, open(job["stderr"], "w") as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            main(job["args"])
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
        except BaseException:  # noqa: BLE001 - any failure is the job's, reported by its status and traceback
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            if Heartbeat.active is not None:
                Heartbeat.active.stop()
            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(environ)
    return code


def serve() -> None:
    replies = os.fdopen(os.dup(1), "w", buffering=1)  # the pipe to the pool, kept apart from what jobs print
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # between jobs nothing reaches the pipe
    replies.write("ready\n")
    for line in sys.stdin:
        replies.write(json.dumps({"code": run(json.loads(line))}) + "\n")


if __name__ == "__main__":
    serve()
