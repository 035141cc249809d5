"""One SPP-SCL training iteration: two-step ("semi-push-pull") or the one-step ablation.

Two-step (config.two_step = True):
  1. forward; L1 = lambda * L_ce + L_cli + L_clt; backward; optimiser step.
  2. forward the same batch again with the updated weights; if the two-step rule says the
     modalities are not yet aligned, L2 = L_clm; backward; a second optimiser step.
One-step (config.two_step = False): L = lambda * L_ce + L_cli + L_clt + L_clm, one backward, one step.

Switches: intra_loss=False drops L_cli and L_clt; inter_loss=False drops L_clm, and then step two
(and its second forward) never happens. In the unimodal ablations only the terms whose embeddings
exist are used (L_clt for text, L_cli for image, never L_clm).

With stored views served a fresh view per forward (config.train_views "forward", runs/train/view_feed.py), the batch
carries "second_view": the inputs of step two's forward, another view of the same records (the authors' encoders
drew new dropout masks for it).

Things the caller should know:
- The model must be in train mode and the batch must hold at least two samples (BatchNorm).
- In two-step mode BatchNorm running statistics are updated by both forwards, as in the original.
- Gradients are cleared with set_to_none=True before each backward, so the second optimiser step
  (L_clm reaches only the text/image branches) leaves the fusion and classifier untouched: AdamW
  skips parameters without a gradient, including their weight decay and moment updates.
  `config.second_step_moves_all` gives the authors' semantics instead (their zero_grad() kept zero
  gradients, so every parameter took the second AdamW step: momentum and weight decay included).
- Under multi-process data parallelism each process decides step two on its own shard; the
  decision would have to be agreed across processes (and unused parameters allowed) before the
  second backward. Single-process training needs nothing.
- The LR scheduler is stepped by the trainer (per epoch), not here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.losses import inter_modal_supcon_loss, intra_modal_supcon_loss, weighted_cross_entropy
from spp_scl.heads.two_step import AlignmentDecision, alignment_decision

MODEL_INPUTS = ("image_maps", "first_token", "token_states", "token_mask")


def step_one_losses(
    outputs: Mapping[str, torch.Tensor | None], labels: torch.Tensor, config: SPPSCLConfig
) -> dict[str, torch.Tensor]:
    """The enabled step-one terms: "ce" (already times lambda) and, if on, "intra_image", "intra_text"."""
    terms = {"ce": weighted_cross_entropy(outputs["logits"], labels, config.ce_weight)}
    if config.intra_loss:
        if outputs["v"] is not None:
            terms["intra_image"] = intra_modal_supcon_loss(outputs["v"], labels, config.temperature)
        if outputs["t"] is not None:
            terms["intra_text"] = intra_modal_supcon_loss(outputs["t"], labels, config.temperature)
    return terms


def inter_loss_enabled(config: SPPSCLConfig) -> bool:
    """L_clm needs both modalities and the switch."""
    return config.inter_loss and config.modality == "both"


def spp_scl_step(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    config: SPPSCLConfig,
    backward: Callable[[torch.Tensor], None] | None = None,
    decide_without_graph: bool = False,
) -> dict[str, float]:
    """Run one iteration on `batch` (keys image_maps, first_token, token_states, token_mask, labels;
    tensors already on the model's device; inputs the modality does not use may be absent).

    `backward` replaces `loss.backward()` (e.g. Accelerate's `accelerator.backward`).

    Returns floats (disabled terms are 0.0):
      loss_step_one, loss_step_two (0.0 unless step two ran), ce (times lambda), intra_image,
      intra_text, inter (L_clm; in two-step mode measured on the second forward, and applied only
      when step_two_ran), step_two_ran, rule_checked, aligned, below_mean_count (c),
      same_label_pairs (P), rule_m (m), rule_saturated (the share of S at exactly 1.0); the last six are 0.0
      when the rule was not evaluated; train_correct (step one's correct predictions, in train mode).
    """
    if backward is None:
        backward = _plain_backward
    labels = batch["labels"]
    inputs = {name: batch.get(name) for name in MODEL_INPUTS}
    second = batch.get("second_view")
    inputs_two = {name: second.get(name) for name in MODEL_INPUTS} if second is not None else inputs
    use_inter = inter_loss_enabled(config)

    outputs = model(**inputs)
    terms = step_one_losses(outputs, labels, config)
    if use_inter and not config.two_step:
        terms["inter"] = inter_modal_supcon_loss(outputs["v"], outputs["t"], labels, config.temperature)
    loss_step_one = sum(terms.values())
    _optimise(loss_step_one, optimizer, backward)

    report = {
        "loss_step_one": loss_step_one.item(),
        "loss_step_two": 0.0,
        "ce": terms["ce"].item(),
        "intra_image": terms["intra_image"].item() if "intra_image" in terms else 0.0,
        "intra_text": terms["intra_text"].item() if "intra_text" in terms else 0.0,
        "inter": terms["inter"].item() if "inter" in terms else 0.0,
        "step_two_ran": 0.0,
        "rule_checked": 0.0,
        "aligned": 0.0,
        "below_mean_count": 0.0,
        "same_label_pairs": 0.0,
        "rule_m": 0.0,
        "rule_saturated": 0.0,
        "train_correct": float((outputs["logits"].detach().argmax(1) == labels).sum()),
    }
    if not (config.two_step and use_inter):
        return report

    # Step two: re-embed the same batch with the weights step one just updated. This forward builds its graph,
    # which step two uses when it runs (a forward without gradients would cost as much: heads/token_lstm.py runs
    # the same kernels either way). With `decide_without_graph` it builds none and, if step two runs, is
    # replayed with a graph from the same random state and BatchNorm statistics: exactly the outputs (and
    # statistics updates) of one forward with gradients, holding less memory while undecided, at the price of
    # a whole forward more whenever step two runs.
    replay = _ForwardReplay(model) if decide_without_graph else None
    with torch.set_grad_enabled(not decide_without_graph):
        outputs = model(**inputs_two)
    decision = alignment_decision(outputs["t"], outputs["v"], labels, config.theta)
    if not decision.aligned and replay is not None:
        replay.restore()
        outputs = model(**inputs_two)
    inter = inter_modal_supcon_loss(outputs["v"], outputs["t"], labels, config.temperature)
    report.update(inter=inter.item(), **rule_report(decision))
    if not decision.aligned:
        # The authors' torch 1.8 zero_grad() left zero gradients in place, so their second AdamW step also moved
        # the fusion and classifier (momentum and weight decay); by default those keep step one's update only.
        _optimise(inter, optimizer, backward, set_to_none=not config.second_step_moves_all)
        report.update(loss_step_two=inter.item(), step_two_ran=1.0)
    return report


def rule_report(decision: AlignmentDecision) -> dict[str, float]:
    """The two-step rule's quantities under the report's keys."""
    return {
        "rule_checked": 1.0,
        "aligned": float(decision.aligned),
        "below_mean_count": float(decision.below_mean_count),
        "same_label_pairs": float(decision.same_label_pairs),
        "rule_m": decision.diagonal_mean,
        "rule_saturated": decision.saturated_fraction,
    }


class _ForwardReplay:
    """Saves what a training-mode forward consumes or changes besides its inputs (the random state that
    draws dropout masks, the BatchNorm running statistics) so that the forward can be run again identically."""

    def __init__(self, model: nn.Module) -> None:
        self.buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
        self.model = model
        self.cpu_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        with torch.no_grad():
            for name, buffer in self.model.named_buffers():
                buffer.copy_(self.buffers[name])


def _optimise(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    backward: Callable[[torch.Tensor], None],
    set_to_none: bool = True,
) -> None:
    optimizer.zero_grad(set_to_none=set_to_none)
    backward(loss)
    optimizer.step()


def _plain_backward(loss: torch.Tensor) -> None:
    loss.backward()
