"""One training iteration with one backward: forward, weighted sum of named loss terms, backward, step.

The CLMLF- and MDSE-style heads train this way (their papers sum their losses). The report has the keys
the trainer logs for every head ("loss_step_one" is the total, "loss_step_two" and "step_two_ran" are 0:
there is no second step), plus each term unweighted under its own name, and train_correct (the forward's correct
predictions, in train mode: the trainer's running train accuracy).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

MODEL_INPUTS = ("image_maps", "first_token", "token_states", "token_mask")

LossTerms = Callable[[Mapping[str, torch.Tensor | None], torch.Tensor], dict[str, tuple[float, torch.Tensor]]]


def single_backward_step(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    loss_terms: LossTerms,
    backward: Callable[[torch.Tensor], None] | None = None,
) -> dict[str, float]:
    """`loss_terms(outputs, labels)` -> {name: (weight, unweighted scalar)}; the loss is the weighted sum."""
    outputs = model(**{name: batch.get(name) for name in MODEL_INPUTS})
    terms = loss_terms(outputs, batch["labels"])
    loss = sum(weight * value for weight, value in terms.values())
    optimizer.zero_grad(set_to_none=True)
    if backward is None:
        loss.backward()
    else:
        backward(loss)
    optimizer.step()
    report = {"loss_step_one": loss.item(), "loss_step_two": 0.0, "step_two_ran": 0.0}
    report["train_correct"] = float((outputs["logits"].detach().argmax(1) == batch["labels"]).sum())
    report.update({name: value.item() for name, (_, value) in terms.items()})
    return report
