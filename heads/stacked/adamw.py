"""AdamW over stacked parameters [T, ...]: each trial its own learning rate, weight decay, moments and step counts.

The update of trial t is torch's fused AdamW kernel (what runs/train/trainer.py's optimizer runs) applied to trial t's
rows, with that trial's hyper-parameters: the same arithmetic as alone, element by element. Step counts are per
trial and per parameter, as torch keeps them: a parameter that gets no gradient in a step (step two's L_clm does
not reach the fusion or the classifier) is skipped, its moments and step count untouched, and a trial that takes
no step (its two-step rule said aligned) moves nothing at all.
"""

from __future__ import annotations

import torch


class StackedAdamW:
    def __init__(
        self,
        params: list[torch.Tensor],
        lrs: list[float],
        weight_decays: list[float],
        betas: tuple[float, float],
        eps: float,
    ) -> None:
        self.params = params
        self.lrs, self.weight_decays = list(lrs), list(weight_decays)
        self.betas, self.eps = betas, eps
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        # As torch's fused AdamW keeps them: float32 step counts, one per trial and parameter.
        self.steps = [torch.zeros(len(p), dtype=torch.float32) for p in params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self, trials: list[int] | None = None, zero_for_missing: list[bool] | None = None) -> None:
        """Steps `trials` (default: all). A parameter without a gradient is skipped for a trial, unless
        `zero_for_missing[trial]`: then it steps with a zero gradient (what zero_grad(set_to_none=False) gives)."""
        trials = range(len(self.lrs)) if trials is None else trials
        beta1, beta2 = self.betas
        for trial in trials:
            chosen = [
                k
                for k, p in enumerate(self.params)
                if p.grad is not None or (zero_for_missing is not None and zero_for_missing[trial])
            ]
            if not chosen:
                continue
            rows = [self.params[k].detach()[trial] for k in chosen]
            grads = [self.params[k].grad for k in chosen]
            steps = [self.steps[k][trial] for k in chosen]
            torch._foreach_add_(steps, 1)
            torch._fused_adamw_(
                rows,
                [torch.zeros_like(row) if grad is None else grad[trial] for row, grad in zip(rows, grads)],
                [self.exp_avgs[k][trial] for k in chosen],
                [self.exp_avg_sqs[k][trial] for k in chosen],
                [],
                steps,
                amsgrad=False,
                lr=self.lrs[trial],
                beta1=beta1,
                beta2=beta2,
                weight_decay=self.weight_decays[trial],
                eps=self.eps,
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )

    def keep(self, trials: list[int], params: list[torch.Tensor]) -> None:
        """Drop every trial not in `trials`; `params` are the stacked parameters after the model dropped them."""
        index = torch.tensor(trials, dtype=torch.long)
        self.params = params
        self.lrs = [self.lrs[t] for t in trials]
        self.weight_decays = [self.weight_decays[t] for t in trials]
        self.exp_avgs = [m.index_select(0, index) for m in self.exp_avgs]
        self.exp_avg_sqs = [v.index_select(0, index) for v in self.exp_avg_sqs]
        self.steps = [s.index_select(0, index) for s in self.steps]
