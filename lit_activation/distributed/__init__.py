"""Runs larger than one device: FSDP2 under Lightning's ModelParallelStrategy, exact against one process.

- shards.py           Shards: how partial results of ranks holding different rows combine (LOCAL: one process)
- sharding.py         the layout (shard groups over `tensor_parallel`), fully_shard, own rows, collectives
- sharded_loading.py  each rank reads only its own rows of the checkpoint
"""

__all__: list[str] = []  # nothing to call directly: a run is sharded by choosing Lightning's ModelParallelStrategy
