"""heads/training_step.py's SPP-SCL iteration for a stack of trials: each trial's losses, two-step decision and
second optimiser step are its own, from the same functions as alone; only the forwards and backwards are shared.

The losses and the rule are cheap ([B, B] at most), so they run per trial, in a loop. Summing the trials' losses
before one backward gives each trial exactly its own gradient (no trial's loss depends on another's parameters).
A trial whose rule says "aligned" takes no second step (StackedAdamW steps only the trials that move), and the
parameters L_clm does not reach (fusion, classifier) get no gradient, so they are skipped as alone, unless the
trial's config asks for the authors' semantics (second_step_moves_all).
"""

from __future__ import annotations

import torch

from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.losses import inter_modal_supcon_loss
from spp_scl.heads.stacked.adamw import StackedAdamW
from spp_scl.heads.stacked.model import DataGroup, StackedSPPSCLHead
from spp_scl.heads.training_step import inter_loss_enabled, rule_report, step_one_losses
from spp_scl.heads.two_step import alignment_decision


def trial_outputs(outputs: dict, trial: int) -> dict:
    return {name: None if value is None else value[trial] for name, value in outputs.items()}


def stacked_spp_scl_step(
    model: StackedSPPSCLHead, groups: list[DataGroup], optimizer: StackedAdamW, configs: list[SPPSCLConfig]
) -> list[dict[str, float]]:
    """One iteration of every trial of the stack (configs[t] is trial t's; groups hold each data group's model
    inputs and labels). Returns each trial's report, with spp_scl_step's keys and meaning."""
    labels = [inputs["labels"] for trials, inputs in groups for _ in trials]
    outputs = model(groups)
    losses, reports = [], []
    for trial, config in enumerate(configs):
        mine = trial_outputs(outputs, trial)
        terms = step_one_losses(mine, labels[trial], config)
        if inter_loss_enabled(config) and not config.two_step:
            terms["inter"] = inter_modal_supcon_loss(mine["v"], mine["t"], labels[trial], config.temperature)
        losses.append(sum(terms.values()))
        reports.append(
            {
                "ce": terms["ce"].item(),
                "intra_image": terms["intra_image"].item() if "intra_image" in terms else 0.0,
                "intra_text": terms["intra_text"].item() if "intra_text" in terms else 0.0,
                "inter": terms["inter"].item() if "inter" in terms else 0.0,
                "train_correct": float((mine["logits"].detach().argmax(1) == labels[trial]).sum()),
            }
        )
    optimizer.zero_grad(set_to_none=True)
    sum(losses).backward()
    optimizer.step()
    for report, loss in zip(reports, losses):
        report.update(
            loss_step_one=loss.item(),
            loss_step_two=0.0,
            step_two_ran=0.0,
            rule_checked=0.0,
            aligned=0.0,
            below_mean_count=0.0,
            same_label_pairs=0.0,
            rule_m=0.0,
            rule_saturated=0.0,
        )
    if not (configs[0].two_step and inter_loss_enabled(configs[0])):  # the same for every trial of a group
        return reports

    # Step two's forward, with its graph, for every trial (alone it always runs: it decides).
    outputs = model(groups)
    moving, inter_losses = [], []
    for trial, config in enumerate(configs):
        t, v = outputs["t"][trial], outputs["v"][trial]
        decision = alignment_decision(t, v, labels[trial], config.theta)
        inter = inter_modal_supcon_loss(v, t, labels[trial], config.temperature)
        reports[trial].update(inter=inter.item(), **rule_report(decision))
        if not decision.aligned:
            moving.append(trial)
            inter_losses.append(inter)
            reports[trial].update(loss_step_two=inter.item(), step_two_ran=1.0)
    if moving:
        optimizer.zero_grad(set_to_none=True)
        sum(inter_losses).backward()
        optimizer.step(moving, zero_for_missing=[config.second_step_moves_all for config in configs])
    return reports


def stacked_parameters_finite(model: StackedSPPSCLHead) -> list[bool]:
    """Per trial: whether all its parameters and statistics are finite."""
    finite = torch.ones(model.trials, dtype=torch.bool)
    for tensor in (*model.params.values(), *model.buffers.values()):
        if tensor.is_floating_point():
            finite &= torch.isfinite(tensor.detach()).flatten(1).all(dim=1)
    return finite.tolist()
