"""Training that diverges stops, with the place and the value, instead of saving and serving NaN weights.

The choice: a non-finite loss (NaN or infinity) stops the run at once with a Diverged error (exit status 6)
naming the epoch, the step, the loss term and the learning rate, rather than skipping such steps and counting
them. A skipped step hides a learning rate or a batch that is wrong, and after one non-finite gradient the
optimiser's moments are usually poisoned, so the steps after it would diverge too. The weights are checked at
the end of each epoch as well (a last step can make them non-finite while its loss was still finite): a head
with non-finite weights is never selected, saved (runs/train/checkpoint.py refuses) or served (nor loaded).
"""

from __future__ import annotations

import math

from torch import nn

from spp_scl.core.errors import Diverged
from spp_scl.runs.train.checkpoint import first_non_finite


def check_losses(report: dict, keys, epoch: int, step: int, lr: float) -> None:
    for key in keys:
        value = report.get(key, 0.0)
        if not math.isfinite(value):
            raise Diverged(
                f"training diverged at epoch {epoch}, step {step}: {key} = {value} (learning rate {lr:g}); "
                "stopped before selecting or saving anything from this epoch (try a lower --lr)"
            )


def check_weights(model: nn.Module, epoch: int, lr: float) -> None:
    bad = first_non_finite(model.state_dict().items())
    if bad is not None:
        raise Diverged(
            f"training diverged in epoch {epoch}: the weight {bad} is not finite (learning rate {lr:g}); "
            "stopped before selecting or saving it (try a lower --lr)"
        )
