"""Features are checked to be finite where they enter the cache: each shard, as stored, before it is written.

An inf or NaN in a cache would surface much later as a diverged training ("try a lower --lr": the wrong cause
and the wrong advice) or as a prediction counted in the metrics. The usual cause is float16 storage: its largest
value is 65504, and an encoder whose outputs reach 1e5 stores inf. The first record with a non-finite value is
named with its split and the array; nothing of that shard is written (finished shards are kept).
"""

from __future__ import annotations

import torch

from spp_scl.extract.records import BadInput, Record

FLOAT16_MAX = 65504.0
# Arrays of a shard whose first axis is one row per record (clean, or per view record) or per token.
PER_RECORD = ("image_maps", "first_token", "view_image_maps")
PER_TOKEN = {"token_states": "text_lengths", "view_token_states": "view_text_lengths"}


def check_finite(tensors: dict, records: list[Record], kept: list[int], view_rows: list[int], dtype: str) -> None:
    """`tensors`: a shard's arrays as stored; `kept` (clean arrays) and `view_rows` (view arrays): the index in
    `records` of each of their rows."""
    for name, values in tensors.items():
        if not values.is_floating_point() or values.numel() == 0:
            continue
        bad = ~torch.isfinite(values)
        if not bad.any():
            continue
        first_row = int(bad.flatten(1).any(1).nonzero()[0, 0])
        rows = view_rows if name.startswith("view_") else kept
        if name in PER_TOKEN:
            ends = torch.cumsum(tensors[PER_TOKEN[name]].long(), 0)
            first_row = int(torch.searchsorted(ends, first_row, right=True))
        record = records[rows[first_row]]
        raise BadInput(
            f"{record.source}: {record.split} record id {record.id!r}: its {name} hold non-finite values "
            f"({_kinds(values, bad)}; {int(bad.sum())} in this shard){_advice(values, bad, dtype)}; nothing of "
            "this shard was written (finished shards are kept)"
        )


def _kinds(values: torch.Tensor, bad: torch.Tensor) -> str:
    found = values[bad]
    kinds = [
        kind for kind, present in (("inf", torch.isinf(found).any()), ("NaN", torch.isnan(found).any())) if present
    ]
    return " and ".join(kinds)


def _advice(values: torch.Tensor, bad: torch.Tensor, dtype: str) -> str:
    if dtype == "float16" and torch.isinf(values[bad]).any():
        return (
            f": stored as float16, whose largest value is {FLOAT16_MAX:g}, an encoder output beyond it becomes inf; "
            "extract with --dtype float32 --force to store it (--force: this unfinished extraction is float16)"
        )
    return ": the encoder itself produced them (check its weights and inputs)"
