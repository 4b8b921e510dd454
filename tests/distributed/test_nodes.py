"""Several nodes: 2 simulated nodes × 2 processes give one process's counts and LLMDcos. The counts run is
launched as on a cluster (two `torchrun` launches with --nnodes 2, --node_rank 0|1 and a master on
127.0.0.1); the LLMDcos run on the tests' pool of processes, which Lightning sees as ranks that a
launcher started (LOCAL_RANK, NODE_RANK, WORLD_SIZE), as on a cluster whose scheduler starts them.

Lightning's ModelParallelStrategy then puts each shard group inside a node (tensor_parallel: the
node's devices) and the replicas across the nodes (data_parallel: the nodes), as HSDP does.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import child_env
from tests.helpers.processes import LLMDCOS, SHARDED, cli, counts_args, write_model

pytestmark = [pytest.mark.ddp, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_two_nodes(tmp_path: Path, name: str, args: list[str], model: str) -> Path:
    """Run `lit-activation predict` as two nodes of 2 processes each (two torchrun launches); its run dir."""
    port = free_port()
    command = [
        "predict", "--model.model", model, "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.num_nodes", "2",
        "--trainer.strategy", SHARDED, "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--trainer.logger.init_args.name", name, *args,
    ]
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(rank), "--nproc_per_node", "2",
             "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "lit_activation", *command],
            env=child_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in (0, 1)
    ]
    logs = [node.communicate(timeout=600)[0] for node in nodes]
    assert all(node.returncode == 0 for node in nodes), "\n".join(log[-3000:] for log in logs)
    return tmp_path / name / "version_0"


def test_two_nodes_of_two_processes_give_one_process_s_counts_and_llmdcos(tmp_path, bench_files):
    model = str(write_model(tmp_path / "model", intermediate_size=37, vocab_size=105))  # rows that do not divide evenly
    args = counts_args(bench_files, 0.05)
    one, _ = cli(tmp_path, "one", args, model=model)
    four = on_two_nodes(tmp_path, "nodes", args, model)
    one, four = (json.loads((run / "counts.json").read_text())["datasets"] for run in (one, four))
    for name in ("boolq", "mmlu"):
        assert four[name]["layer_counts"] == one[name]["layer_counts"] and four[name]["module_counts"] == one[name]["module_counts"]
        assert four[name]["n_samples"] == one[name]["n_samples"] == 5
    llmdcos = [*LLMDCOS, "--data.data_files", json.dumps({k: bench_files[k] for k in ("boolq", "gsm8k")})]
    one_l, _ = cli(tmp_path, "one_llmdcos", llmdcos, model=model)
    four_l, _ = cli(tmp_path, "nodes_llmdcos", llmdcos, devices=2, nodes=2, strategy=SHARDED, model=model)
    one_l, four_l = (json.loads((run / "llmdcos.json").read_text()) for run in (one_l, four_l))
    assert four_l["llmdcos"].keys() == one_l["llmdcos"].keys()
    for pair, values in one_l["llmdcos"].items():  # cosines in [0, 1] from Gram sums added in another order
        np.testing.assert_allclose(four_l["llmdcos"][pair], values, rtol=0, atol=1e-6)
    np.testing.assert_allclose(four_l["matrix"], one_l["matrix"], rtol=0, atol=1e-6)
