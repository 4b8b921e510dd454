"""Runs of `lit-activation` on one or several CPU processes (gloo), for the multi-process tests: the session's pool of
processes (pool.py), or new ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import child_env
from tests.helpers.pool import POOL

# ModelParallelStrategy as the README shows it; `sharded(dp, tp)` with an explicit layout
SHARDED = json.dumps({"class_path": "lightning.pytorch.strategies.ModelParallelStrategy"})


def sharded(data_parallel: int, tensor_parallel: int) -> str:
    return json.dumps({
        "class_path": "lightning.pytorch.strategies.ModelParallelStrategy",
        "init_args": {"data_parallel_size": data_parallel, "tensor_parallel_size": tensor_parallel},
    })


def cli(
    tmp_path: Path, name: str, args: list[str], devices: int = 1, strategy: str | None = None, subcommand: str = "predict",
    config: Path | None = None, model: str = "tiny-llama", fresh: bool = False, nodes: int = 1,
) -> tuple[Path, str]:
    """Run `lit-activation <subcommand>` on `devices` CPU processes of the session's pool (tests/helpers/pool.py);
    (its run dir, what its ranks wrote to stderr). fresh: `python -m lit_activation` in a new process, which
    starts the others as Lightning does, for what a reused process would change (its resident memory)."""
    command = [
        subcommand, *(["--config", str(config)] if config else []), "--model.model", model,
        "--trainer.accelerator", "cpu", "--trainer.devices", str(devices), "--trainer.num_nodes", str(nodes),
        *(["--trainer.strategy", strategy] if strategy else []),
        "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--trainer.logger.init_args.name", name, *args,
    ]
    assert not (fresh and nodes > 1), "several nodes run on the pool"
    if fresh:
        done = subprocess.run([sys.executable, "-m", "lit_activation", *command], capture_output=True, text=True, env=child_env(), cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-4000:]
        return tmp_path / name / "version_0", done.stderr
    ranks = POOL.run(command, devices, tmp_path, nodes=nodes)
    assert all(rank.code == 0 for rank in ranks), "\n".join(f"rank {r} (exit {rank.code}): {rank.stderr[-3000:]}" for r, rank in enumerate(ranks))
    return tmp_path / name / "version_0", "".join(rank.stderr for rank in ranks)


def probe_records(directory: Path, ranks: int) -> list:
    """What a probe callback wrote for each rank."""
    return [json.loads((directory / f"rank{r}.json").read_text()) for r in range(ranks)]


def write_model(directory: Path, seed: int = 0, **config: int) -> Path:
    """A random Llama-layout model directory (fp32 safetensors) with the tiny tokenizer: weights drawn
    like tiny_model's (N(0, 0.2)), so that scores are far from zero."""
    from transformers import LlamaConfig

    from lit_activation.models.tiny import VOCAB, random_model, tiny_tokenizer

    values = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  vocab_size=VOCAB, max_position_embeddings=512, tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    values.update(config)
    model = random_model(LlamaConfig(**values), seed)
    model.save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    return directory


def counts_args(files: dict[str, str], gamma: float) -> list[str]:
    """Options of a Finding 1 run on boolq and mmlu (5 samples each, batches of 2) at threshold γ."""
    return [
        "--data", "lit_activation.data.datamodule.ActivationDataModule", "--data.mode", "single", "--data.datasets", "[boolq, mmlu]",
        "--data.num_samples", "5", "--data.batch_size", "2", "--data.max_length", "40",
        "--data.data_files", json.dumps({k: files[k] for k in ("boolq", "mmlu")}),
        "--trainer.callbacks+", "lit_activation.callbacks.counts.ActivationCounts", "--trainer.callbacks.gamma", repr(gamma),
    ]


# Options of an LLMDcos run on boolq and gsm8k (3 pairs, one group per batch); its data_files are the caller's
LLMDCOS = [
    "--data", "lit_activation.data.datamodule.ActivationDataModule", "--data.mode", "pairs", "--data.datasets", "[boolq, gsm8k]",
    "--data.num_samples", "3", "--data.batch_size", "1", "--data.max_length", "40", "--trainer.callbacks+", "lit_activation.callbacks.llmdcos.LLMDcos",
]
