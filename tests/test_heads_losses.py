"""The contrastive losses match their definitions and stay finite on degenerate batches."""

import math

import pytest
import torch
import torch.nn.functional as F

from spp_scl.heads.losses import inter_modal_supcon_loss, intra_modal_supcon_loss, weighted_cross_entropy


def naive_intra(embeddings, labels, tau):
    z = F.normalize(embeddings, dim=1)
    per_anchor = []
    for i in range(len(labels)):
        positives = [p for p in range(len(labels)) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(float(z[i] @ z[a]) / tau) for a in range(len(labels)) if a != i)
        terms = [math.log(math.exp(float(z[i] @ z[p]) / tau) / denominator) for p in positives]
        per_anchor.append(-sum(terms) / len(terms))
    return sum(per_anchor) / len(per_anchor)


def naive_inter(image, text, labels, tau):
    zi, zt = F.normalize(image, dim=1), F.normalize(text, dim=1)
    per_anchor = []
    for i in range(len(labels)):
        denominator = sum(math.exp(float(zi[i] @ zt[k]) / tau) for k in range(len(labels)))
        terms = [
            math.log(math.exp(float(zi[i] @ zt[j]) / tau) / denominator)
            for j in range(len(labels))
            if labels[j] == labels[i]
        ]
        per_anchor.append(-sum(terms) / len(terms))
    return sum(per_anchor) / len(per_anchor)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_intra_matches_naive_loop(seed):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(14, 6, generator=generator, dtype=torch.float64)
    # Class 3 has a single sample: that anchor must be skipped, not counted as zero.
    labels = torch.tensor([0, 0, 1, 2, 1, 0, 2, 2, 1, 0, 3, 1, 2, 0])
    for tau in (0.07, 0.5):
        got = intra_modal_supcon_loss(embeddings, labels, tau).item()
        assert got == pytest.approx(naive_intra(embeddings, labels, tau), abs=1e-6, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inter_matches_naive_loop(seed):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(11, 5, generator=generator, dtype=torch.float64)
    text = torch.randn(11, 5, generator=generator, dtype=torch.float64)
    labels = torch.tensor([2, 0, 1, 1, 0, 2, 2, 0, 1, 0, 3])
    for tau in (0.07, 0.5):
        got = inter_modal_supcon_loss(image, text, labels, tau).item()
        assert got == pytest.approx(naive_inter(image, text, labels, tau), abs=1e-6, rel=1e-9)


def test_inter_uses_image_anchors_not_text_anchors():
    # The loss is asymmetric; swapping the roles must be detectable (so the direction is tested above).
    generator = torch.Generator().manual_seed(5)
    image = torch.randn(9, 4, generator=generator, dtype=torch.float64)
    text = torch.randn(9, 4, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1, 1, 0, 2, 2, 0])
    forward = inter_modal_supcon_loss(image, text, labels, 0.1).item()
    assert forward == pytest.approx(naive_inter(image, text, labels, 0.1), abs=1e-6)
    assert abs(forward - inter_modal_supcon_loss(text, image, labels, 0.1).item()) > 1e-6


def _loss_and_grads(loss_fn, batch_size, labels, tau=0.07, scale=1.0):
    generator = torch.Generator().manual_seed(batch_size)
    image = (torch.randn(batch_size, 8, generator=generator) * scale).requires_grad_()
    text = (torch.randn(batch_size, 8, generator=generator) * scale).requires_grad_()
    if loss_fn is intra_modal_supcon_loss:
        loss = loss_fn(image, labels, tau)
    else:
        loss = loss_fn(image, text, labels, tau)
    loss.backward()
    grads = [g for g in (image.grad, text.grad) if g is not None]
    return loss, grads


DEGENERATE_BATCHES = {
    "singleton class": torch.tensor([0, 0, 1, 1, 1, 2]),
    "one class": torch.tensor([1, 1, 1, 1, 1]),
    "all distinct": torch.tensor([0, 1, 2]),
    "batch of one": torch.tensor([2]),
    "two samples": torch.tensor([0, 0]),
}


@pytest.mark.parametrize("loss_fn", [intra_modal_supcon_loss, inter_modal_supcon_loss])
@pytest.mark.parametrize("case", list(DEGENERATE_BATCHES))
def test_losses_and_gradients_are_finite_on_degenerate_batches(loss_fn, case):
    labels = DEGENERATE_BATCHES[case]
    for tau, scale in ((0.07, 1.0), (1e-3, 1e3)):  # also a temperature that makes logits ~ 1000
        loss, grads = _loss_and_grads(loss_fn, len(labels), labels, tau, scale)
        assert torch.isfinite(loss)
        assert grads, "the loss must stay connected to its inputs"
        assert all(torch.isfinite(g).all() for g in grads)


def test_intra_without_any_positive_is_zero_with_zero_gradient():
    for labels in (torch.tensor([4]), torch.tensor([0, 1, 2])):
        loss, grads = _loss_and_grads(intra_modal_supcon_loss, len(labels), labels)
        assert loss.item() == 0.0
        assert all((g == 0).all() for g in grads)


def test_inter_batch_of_one_is_zero():
    loss, grads = _loss_and_grads(inter_modal_supcon_loss, 1, torch.tensor([1]))
    assert loss.item() == pytest.approx(0.0, abs=1e-7)


def test_zero_embedding_does_not_give_nan():
    embeddings = torch.randn(4, 6)
    embeddings[1] = 0.0
    embeddings.requires_grad_()
    labels = torch.tensor([0, 0, 1, 1])
    loss = intra_modal_supcon_loss(embeddings, labels) + inter_modal_supcon_loss(embeddings, embeddings.flip(0), labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(embeddings.grad).all()


def test_weighted_cross_entropy_scales_by_lambda():
    logits = torch.randn(7, 3)
    labels = torch.randint(0, 3, (7,))
    assert weighted_cross_entropy(logits, labels, 5.0).item() == pytest.approx(
        5.0 * F.cross_entropy(logits, labels).item()
    )
