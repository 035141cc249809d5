"""The layers of a stacked head: one weight per trial along a leading trial axis T, applied to [T, B, ...].

Each is written so that trial t gets the same floating-point operations as the module it stands for run alone
(tests/test_grouped_trainer.py holds the grouped trainer to training alone):
- a linear layer is each trial's F.linear in turn: one batched GEMM over trials (baddbmm) does the same work, but
  BLAS rounds a batched product, and its backward, differently from alone's on some CPUs (Intel's, 2026-12-06);
- BatchNorm of T trials with C channels each is BatchNorm of one layer with T * C channels: its statistics are
  per channel over the batch, so each trial is normalised by its own batch statistics and updates its own
  running statistics (views of the stacked [T, C] buffers), with the same kernel as alone;
- dropout masks are drawn per trial from that trial's own generator, exactly as F.dropout draws them on the CPU
  (heads/dropout.py), in the order the trial's forward alone draws them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spp_scl.heads.dropout import dropout_noise


def stacked_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x [T, B, in], weight [T, out, in], bias [T, out] or None -> [T, B, out]: each trial's F.linear, as alone."""
    biases = bias.unbind(0) if bias is not None else [None] * len(weight)
    return torch.stack([F.linear(rows, w, b) for rows, w, b in zip(x.unbind(0), weight.unbind(0), biases)])


def batch_norm_wide(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    training: bool,
    momentum: float,
    eps: float,
) -> torch.Tensor:
    """x [N, T * C] (trial t's channels in columns t*C .. t*C + C - 1), parameters and statistics [T, C]."""
    return F.batch_norm(
        x,
        running_mean.view(-1),
        running_var.view(-1),
        weight.reshape(-1),
        bias.reshape(-1),
        training,
        momentum,
        eps,
    )


def stacked_batch_norm(x: torch.Tensor, weight, bias, running_mean, running_var, training, momentum, eps):
    """x [T, B, C] -> [T, B, C]: each trial's BatchNorm1d, as one BatchNorm over [B, T * C]."""
    trials, batch, channels = x.shape
    wide = x.transpose(0, 1).reshape(batch, trials * channels)
    out = batch_norm_wide(wide, weight, bias, running_mean, running_var, training, momentum, eps)
    return out.view(batch, trials, channels).transpose(0, 1)


class TrialDropout:
    """Per-trial dropout masks from per-trial generators. `probabilities[t]` is trial t's dropout; a trial with
    p = 0 draws nothing (as nn.Dropout and the image branch draw nothing then)."""

    def __init__(self, probabilities: list[float], generators: list[torch.Generator]) -> None:
        self.probabilities = list(probabilities)
        self.generators = list(generators)

    def masks(self, trials: range, shape: tuple[int, ...]) -> torch.Tensor | None:
        """[len(trials), *shape]: each trial's mask of `shape`, scaled by 1 / (1 - p); None when no trial drops."""
        if all(self.probabilities[t] == 0 for t in trials):
            return None
        masks = torch.empty(len(trials), *shape)
        for row, trial in enumerate(trials):
            # What ATen's CPU dropout draws (heads/dropout.py), from the trial's own generator (nothing at p = 0).
            masks[row] = dropout_noise(shape, self.probabilities[trial], generator=self.generators[trial])
        return masks

    def __call__(self, x: torch.Tensor, trials: range, training: bool) -> torch.Tensor:
        """x [T, B, C] for `trials` -> x times each trial's mask of shape [B, C] (unchanged in eval mode)."""
        if not training:
            return x
        masks = self.masks(trials, tuple(x.shape[1:]))
        return x if masks is None else x * masks

    def keep(self, trials: list[int]) -> None:
        self.probabilities = [self.probabilities[t] for t in trials]
        self.generators = [self.generators[t] for t in trials]
