"""spp_scl_step: the two-step and one-step iterations learn, and the switches do what they say."""

import time

import pytest
import torch

from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.model import SPPSCLHead
from spp_scl.heads.presets import resolve_config
from spp_scl.heads.training_step import spp_scl_step

CHANNELS, TEXT_DIM, LAYERS, CLASSES, MAX_LENGTH = 8, 12, 3, 3, 8
NOISE = 4.0
EPOCHS = 4


def synthetic_batch(batch_size, generator, noise=NOISE):
    """Labels are written into both modalities as fixed class prototypes buried in noise."""
    prototypes = torch.Generator().manual_seed(1234)
    image_prototypes = torch.randn(CLASSES, CHANNELS, generator=prototypes)
    text_prototypes = torch.randn(CLASSES, TEXT_DIM, generator=prototypes)

    labels = torch.randint(0, CLASSES, (batch_size,), generator=generator)
    image_maps = image_prototypes[labels][:, :, None, None] + noise * torch.randn(
        batch_size, CHANNELS, 3, 3, generator=generator
    )
    lengths = torch.randint(2, MAX_LENGTH + 1, (batch_size,), generator=generator)
    mask = torch.arange(MAX_LENGTH).unsqueeze(0) < lengths.unsqueeze(1)
    token_states = text_prototypes[labels][:, None, None, :] + noise * torch.randn(
        batch_size, LAYERS, MAX_LENGTH, TEXT_DIM, generator=generator
    )
    first_token = text_prototypes[labels][:, None, :] + noise * torch.randn(
        batch_size, LAYERS, TEXT_DIM, generator=generator
    )
    return {
        "image_maps": image_maps,
        "first_token": first_token,
        "token_states": token_states * mask[:, None, :, None],
        "token_mask": mask,
        "labels": labels,
    }


def new_model(seed=0, **overrides):
    torch.manual_seed(seed)
    config = resolve_config(**overrides)
    model = SPPSCLHead(config, CHANNELS, TEXT_DIM, LAYERS, CLASSES)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay
    )
    return model, optimizer, config


def accuracy(model, batch):
    model.eval()
    with torch.no_grad():
        inputs = {name: value for name, value in batch.items() if name != "labels"}
        predictions = model(**inputs)["logits"].argmax(dim=1)
    model.train()
    return (predictions == batch["labels"]).float().mean().item()


@pytest.mark.parametrize(
    "two_step, theta",
    [
        (True, 2 / 3),
        (True, 1e9),  # a theta no batch can satisfy, so step two runs every iteration
        (False, 2 / 3),
    ],
)
def test_short_training_beats_chance_quickly(two_step, theta):
    model, optimizer, config = new_model(two_step=two_step, theta=theta, lr=3e-3)
    data = torch.Generator().manual_seed(7)
    train_batches = [synthetic_batch(32, data) for _ in range(6)]
    held_out = synthetic_batch(300, data)
    before = accuracy(model, held_out)

    start = time.perf_counter()
    step_two_count = 0
    rule_checks = 0
    model.train()
    for _epoch in range(EPOCHS):
        for batch in train_batches:
            report = spp_scl_step(model, batch, optimizer, config)
            assert all(isinstance(value, float) for value in report.values())
            step_two_count += int(report["step_two_ran"])
            rule_checks += int(report["rule_checked"])
    elapsed = time.perf_counter() - start

    after = accuracy(model, held_out)
    print(
        f"two_step={two_step}: accuracy {before:.3f} -> {after:.3f}, step two ran {step_two_count}/{rule_checks}, {elapsed:.1f}s"
    )
    assert after > 0.7, f"chance is 1/3; got {after:.3f}"
    iterations = EPOCHS * len(train_batches)
    if two_step:
        assert rule_checks == iterations
        if theta > 1e6:
            assert step_two_count == iterations
    else:
        assert rule_checks == 0 and step_two_count == 0


def count_backward_calls(**overrides):
    model, optimizer, config = new_model(**overrides)
    calls = []

    def backward(loss):
        calls.append(loss.item())
        loss.backward()

    report = spp_scl_step(
        model, synthetic_batch(16, torch.Generator().manual_seed(3)), optimizer, config, backward=backward
    )
    return report, calls


def test_step_two_runs_when_not_aligned_and_uses_the_given_backward():
    # theta so large that c >= theta * P can never hold: step two must run.
    report, calls = count_backward_calls(theta=1e9)
    assert report["step_two_ran"] == 1.0 and report["aligned"] == 0.0
    assert calls == pytest.approx([report["loss_step_one"], report["loss_step_two"]])
    assert report["loss_step_two"] == pytest.approx(report["inter"])


def test_step_two_is_skipped_when_aligned():
    report, calls = count_backward_calls(theta=0.0)
    assert report["rule_checked"] == 1.0 and report["aligned"] == 1.0
    assert report["step_two_ran"] == 0.0 and report["loss_step_two"] == 0.0
    assert len(calls) == 1


def test_without_inter_loss_step_two_never_runs():
    report, calls = count_backward_calls(inter_loss=False, theta=1e9)
    assert report["rule_checked"] == 0.0 and report["step_two_ran"] == 0.0 and report["inter"] == 0.0
    assert len(calls) == 1


def test_without_intra_loss_step_one_is_weighted_cross_entropy_only():
    report, _ = count_backward_calls(intra_loss=False, ce_weight=5.0)
    assert report["intra_image"] == 0.0 and report["intra_text"] == 0.0
    assert report["loss_step_one"] == pytest.approx(report["ce"])


def test_step_one_is_the_sum_of_its_terms():
    report, _ = count_backward_calls()
    assert report["intra_image"] > 0 and report["intra_text"] > 0
    assert report["loss_step_one"] == pytest.approx(
        report["ce"] + report["intra_image"] + report["intra_text"], rel=1e-5
    )


def test_one_step_sums_all_four_losses_in_one_backward():
    report, calls = count_backward_calls(two_step=False)
    assert len(calls) == 1 and report["inter"] > 0
    total = report["ce"] + report["intra_image"] + report["intra_text"] + report["inter"]
    assert report["loss_step_one"] == pytest.approx(total, rel=1e-5)


def test_step_two_leaves_fusion_and_classifier_untouched():
    model, optimizer, config = new_model(theta=1e9)
    snapshots = []
    optimizer.register_step_post_hook(
        lambda *_: snapshots.append([p.detach().clone() for p in model.classifier.parameters()])
    )
    text_before_step_two = []
    optimizer.register_step_pre_hook(
        lambda *_: text_before_step_two.append(model.text_projection.alignment[0].weight.detach().clone())
    )
    report = spp_scl_step(model, synthetic_batch(16, torch.Generator().manual_seed(4)), optimizer, config)
    assert report["step_two_ran"] == 1.0 and len(snapshots) == 2
    assert all(torch.equal(a, b) for a, b in zip(*snapshots))
    # ... while the text branch, which L_clm reaches, does move in step two.
    assert not torch.equal(text_before_step_two[1], model.text_projection.alignment[0].weight)


@pytest.mark.parametrize("modality", ["text", "image"])
def test_unimodal_step_uses_only_its_own_terms(modality):
    report, calls = count_backward_calls(modality=modality, theta=1e9)
    own, missing = ("intra_text", "intra_image") if modality == "text" else ("intra_image", "intra_text")
    assert report[own] > 0 and report[missing] == 0.0
    assert report["inter"] == 0.0 and report["step_two_ran"] == 0.0 and len(calls) == 1


def _reference_two_step(model, batch, optimizer, config):
    """The two-step iteration written plainly: the second forward always builds its graph."""
    from spp_scl.heads.losses import inter_modal_supcon_loss
    from spp_scl.heads.training_step import step_one_losses
    from spp_scl.heads.two_step import alignment_decision

    inputs = {k: batch[k] for k in ("image_maps", "first_token", "token_states", "token_mask")}
    loss = sum(step_one_losses(model(**inputs), batch["labels"], config).values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    outputs = model(**inputs)
    if not alignment_decision(outputs["t"], outputs["v"], batch["labels"], config.theta).aligned:
        optimizer.zero_grad(set_to_none=True)
        inter_modal_supcon_loss(outputs["v"], outputs["t"], batch["labels"], config.temperature).backward()
        optimizer.step()


@pytest.mark.parametrize("decide_without_graph", [True, False])
@pytest.mark.parametrize("theta", [0.0, 1e9])  # never / always run step two
def test_gradient_free_decision_forward_changes_nothing(theta, decide_without_graph):
    """spp_scl_step decides on a forward without a graph and replays it when step two runs: weights, BatchNorm
    statistics and the random state must end exactly as with the plain two-forward iteration."""
    config = SPPSCLConfig(theta=theta)
    generator = torch.Generator().manual_seed(3)
    batch = {
        "image_maps": torch.randn(8, 6, 3, 3, generator=generator),
        "first_token": torch.randn(8, 2, 5, generator=generator),
        "token_states": torch.randn(8, 2, 4, 5, generator=generator),
        "token_mask": torch.ones(8, 4, dtype=torch.bool),
        "labels": torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]),
    }
    states = []
    ours_step = lambda *args: spp_scl_step(*args, decide_without_graph=decide_without_graph)  # noqa: E731
    for step in (ours_step, _reference_two_step):
        torch.manual_seed(0)
        model = SPPSCLHead(config, 6, 5, 2, 3).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for _ in range(3):
            step(model, batch, optimizer, config)
        states.append(({k: v.clone() for k, v in model.state_dict().items()}, torch.rand(1)))
    (ours, ours_next), (reference, reference_next) = states
    assert ours.keys() == reference.keys()
    for name in ours:
        assert torch.equal(ours[name], reference[name]), name
    assert torch.equal(ours_next, reference_next)
