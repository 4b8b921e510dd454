"""What a W&B offline run recorded, read back from its own files (no network, no W&B server).

An offline run keeps every record in `wandb/offline-run-*/run-<id>.wandb`: a LevelDB-style log (a
7-byte header `:W&B`, magic, version; then 32 KiB blocks of records, each `crc32, length, type` and
its bytes, a record split over blocks as first/middle/last parts) of W&B's protobuf `Record`s.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[bytes]:
    """Every record's bytes, in order."""
    raw = path.read_bytes()
    ident, magic, _ = struct.unpack("<4sHB", raw[:HEADER])
    assert (ident, magic) == (b":W&B", 0xBEE1), f"{path} is not a W&B run file"
    out, parts, pos = [], b"", HEADER
    while pos + HEADER <= len(raw):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + HEADER])
        if kind == 0 and length == 0:  # zero padding up to the block's end
            pos += left
            continue
        data = raw[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            out.append(data)
        elif kind == FIRST:
            parts = data
        elif kind == MIDDLE:
            parts += data
        elif kind == LAST:
            out.append(parts + data)
    return out


def offline_history(save_dir: Path) -> list[dict[str, Any]]:
    """Every history row (one per `log` call) of the one offline run under `save_dir`, keys joined by '/'."""
    from wandb.proto import wandb_internal_pb2

    (path,) = save_dir.glob("wandb/offline-run-*/run-*.wandb")
    rows = []
    for data in records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
    return rows
