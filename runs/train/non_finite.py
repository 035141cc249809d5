"""Non-finite values are named where they enter, never trained on, counted or served.

A cache can hold NaN or infinity (a float16 overflow of an encoder's output, a damaged or edited file). Checking
every batch would cost a pass over every feature; the checks run where something has already gone wrong instead:
- a non-finite training loss: the batch it came from is checked first, and when its inputs are not finite the
  error says so (exit status 3, the record, split and array), not "diverged, try a lower --lr";
- dev and test probabilities, whose check costs nothing: a record whose probabilities are not finite is never
  counted in the metrics. Its inputs are checked: non-finite inputs are the cache's fault (3), finite ones the
  head's (6, diverged).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spp_scl.core.errors import Diverged, InputError

INPUT_ARRAYS = ("image_maps", "first_token", "token_states")


class NonFiniteInput(InputError):
    """A cache record whose features hold NaN or infinity."""


def non_finite_records(batch) -> list[tuple[str, str, str]]:
    """(id, array, "NaN" or "infinity") for each record of a FeatureBatch whose inputs are not finite (padding
    excluded: it is zero by construction)."""
    found = []
    for array in INPUT_ARRAYS:
        values = getattr(batch, array).float()
        if array == "token_states":  # [B, K, L, D]; padded tokens are masked out
            values = values * batch.token_mask[:, None, :, None].to(values.device)
        bad = ~torch.isfinite(values.reshape(len(batch), -1))
        for row in torch.nonzero(bad.any(1)).flatten().tolist():
            kind = "NaN" if bool(torch.isnan(values.reshape(len(batch), -1)[row]).any()) else "infinity"
            found.append((batch.ids[row], array, kind))
    return found


def _describe(found: list[tuple[str, str, str]], split: str, cache: str | Path) -> str:
    shown = "; ".join(f"record {record!r}: {kind} in {array}" for record, array, kind in found[:3])
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return (
        f"{cache}: the {split} split holds non-finite features ({shown}{more}); nothing can be trained on or "
        "scored from them: check the cache with `spp-scl inspect --verify`, and rebuild it (`spp-scl extract "
        "--force`; --dtype float32 when an encoder's outputs overflow float16)"
    )


def check_batch_inputs(batch, split: str, cache: str | Path) -> None:
    """Raise NonFiniteInput when the batch (a FeatureBatch, or a ViewedBatch of views) has non-finite inputs."""
    parts = [batch.first, batch.second] if hasattr(batch, "first") else [batch]
    found = [item for part in parts if part is not None for item in non_finite_records(part)]
    if found:
        raise NonFiniteInput(_describe(found, split, cache))


def check_probabilities(probabilities: np.ndarray, split, name: str, cache: str | Path, epoch: int | None) -> None:
    """Every row of `probabilities` (over `split`, a CachedSplit, in its order) must be finite, or the split
    cannot be scored: NonFiniteInput when those records' features are not finite, else Diverged."""
    bad = np.flatnonzero(~np.isfinite(probabilities).all(1))
    if not len(bad):
        return
    check_batch_inputs(split.batch(bad[:256]), name, cache)
    ids = [split.ids[i] for i in bad[:3]]
    where = f" after epoch {epoch}" if epoch is not None else ""
    raise Diverged(
        f"the head's class probabilities are not finite for {len(bad)} {name} record(s) (first {ids}){where}, "
        "though their features are: its outputs overflow (training diverged; try a lower --lr); these records "
        "are not scored"
    )
