"""Step two's AdamW step: by default it moves only what L_clm reaches; `second_step_moves_all` reproduces the
authors' semantics (zero gradients kept, so every parameter takes the second step), against a plain loop."""

from __future__ import annotations

import torch

from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.losses import inter_modal_supcon_loss
from spp_scl.heads.model import SPPSCLHead
from spp_scl.heads.training_step import spp_scl_step, step_one_losses

INPUTS = ("image_maps", "first_token", "token_states", "token_mask")


def _batch():
    generator = torch.Generator().manual_seed(4)
    return {
        "image_maps": torch.randn(8, 6, 3, 3, generator=generator),
        "first_token": torch.randn(8, 2, 5, generator=generator),
        "token_states": torch.randn(8, 2, 4, 5, generator=generator),
        "token_mask": torch.ones(8, 4, dtype=torch.bool),
        "labels": torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]),
    }


def _authors_iteration(model, batch, optimizer, config):
    """Step one, then step two with gradients zeroed in place (torch 1.8's zero_grad()), written plainly."""
    inputs = {k: batch[k] for k in INPUTS}
    optimizer.zero_grad(set_to_none=False)
    sum(step_one_losses(model(**inputs), batch["labels"], config).values()).backward()
    optimizer.step()
    outputs = model(**inputs)
    optimizer.zero_grad(set_to_none=False)
    inter_modal_supcon_loss(outputs["v"], outputs["t"], batch["labels"], config.temperature).backward()
    optimizer.step()


def _train(step, config, iterations=3):
    torch.manual_seed(0)
    model = SPPSCLHead(config, 6, 5, 2, 3).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    for _ in range(iterations):
        step(model, _batch(), optimizer, config)
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_authors_semantics_match_a_plain_loop_and_move_the_classifier():
    config = SPPSCLConfig(theta=1e9, second_step_moves_all=True)  # theta this high: step two always runs
    ours = _train(lambda m, b, o, c: spp_scl_step(m, b, o, c, decide_without_graph=False), config)
    reference = _train(_authors_iteration, config)
    for name in ours:
        torch.testing.assert_close(ours[name], reference[name], rtol=0, atol=1e-6, msg=name)
    default = _train(
        lambda m, b, o, c: spp_scl_step(m, b, o, c, decide_without_graph=False),
        config.replace(second_step_moves_all=False),
    )
    classifier = [name for name in ours if name.startswith("classifier") and name.endswith("weight")]
    assert classifier and any(not torch.equal(ours[name], default[name]) for name in classifier)
