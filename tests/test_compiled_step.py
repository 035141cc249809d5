"""A head whose forward goes through torch.compile (bench/compiled_step.py's way: the text branch's data-dependent
schedule and recurrence eager between compiled graphs) gives the eager head's losses and gradients, and a new set of
token lengths does not recompile it: what a user who compiles the head relies on, and what the compiled figures in
docs/benchmarks.md assume."""

from __future__ import annotations

import pytest
import torch

from bench.compiled_step import eager_islands
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.losses import inter_modal_supcon_loss
from spp_scl.heads.model import SPPSCLHead
from spp_scl.heads.training_step import step_one_losses

pytestmark = pytest.mark.slow

LAYERS, DIM, CHANNELS = 2, 16, 8


def batch(lengths: list[int], seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    rows, longest = len(lengths), max(lengths)
    mask = torch.arange(longest).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return {
        "image_maps": torch.randn(rows, CHANNELS, 2, 2, generator=generator),
        "first_token": torch.randn(rows, LAYERS, DIM, generator=generator),
        "token_states": torch.randn(rows, LAYERS, longest, DIM, generator=generator),
        "token_mask": mask,
        "labels": torch.arange(rows) % 3,
    }


def loss_and_gradients(model: SPPSCLHead, inputs: dict, config: SPPSCLConfig):
    """Step one's losses plus L_clm on one forward, and the gradient of every parameter."""
    torch.manual_seed(7)  # the dropout masks: inductor draws them as eager does under fallback_random
    model.zero_grad(set_to_none=True)
    outputs = model(**{key: value for key, value in inputs.items() if key != "labels"})
    terms = step_one_losses(outputs, inputs["labels"], config)
    loss = sum(terms.values()) + inter_modal_supcon_loss(outputs["v"], outputs["t"], inputs["labels"], 0.07)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_the_compiled_head_gives_the_eager_losses_and_gradients_without_recompiling_for_lengths():
    config = SPPSCLConfig(ha_gate="projection")
    torch.manual_seed(0)
    model = SPPSCLHead(config, CHANNELS, DIM, LAYERS, 3).train()
    batches = [batch([5, 3, 7, 1, 4, 2, 6, 3], seed=1), batch([2, 9, 4, 4, 1, 8, 3, 5], seed=2)]
    eager = [loss_and_gradients(model, inputs, config) for inputs in batches]

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = SPPSCLHead(config, CHANNELS, DIM, LAYERS, 3).train()
    compiled.load_state_dict(model.state_dict())
    compiled.forward = torch.compile(compiled.forward, dynamic=True)
    with eager_islands(), torch._inductor.config.patch(fallback_random=True):
        found = [loss_and_gradients(compiled, inputs, config) for inputs in batches]
    counters = torch._dynamo.utils.counters
    # Four graphs cut by the three eager islands (lengths, schedule, recurrence), the second batch's lengths and
    # padded length reusing them: nothing is specialised on the batch's lengths.
    assert (counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())) == (4, 3)
    for (eager_loss, eager_grads), (loss, grads) in zip(eager, found):
        # Inductor fuses and reorders float32 sums: agreement to float32 rounding, not bit for bit.
        torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-5)
        assert grads.keys() == eager_grads.keys() and len(grads) > 20
        for name, grad in grads.items():
            torch.testing.assert_close(grad, eager_grads[name], rtol=1e-4, atol=1e-5, msg=name)
