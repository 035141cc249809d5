"""LBCL (CLMLF) and MACL (MDSE) match their definitions, computed naively anchor by anchor."""

import math

import pytest
import torch
import torch.nn.functional as F

from spp_scl.heads.losses.label_based_contrastive import label_based_contrastive_loss
from spp_scl.heads.losses.modality_agnostic_contrastive import modality_agnostic_contrastive_loss


def naive_supervised_contrastive(samples, labels, tau):
    """- mean over anchors with a positive of mean over positives of log(exp(s_ip/tau) / sum_{a != i} exp(s_ia/tau))."""
    z = [F.normalize(sample, dim=0) for sample in samples]
    per_anchor = []
    for i in range(len(z)):
        positives = [p for p in range(len(z)) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(float(z[i] @ z[a]) / tau) for a in range(len(z)) if a != i)
        per_anchor.append(
            -sum(math.log(math.exp(float(z[i] @ z[p]) / tau) / denominator) for p in positives) / len(positives)
        )
    return sum(per_anchor) / len(per_anchor)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lbcl_matches_naive_loop(seed):
    generator = torch.Generator().manual_seed(seed)
    fused = torch.randn(13, 7, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 2, 0, 2, 1, 0, 3, 2, 1, 0, 2])  # class 3 alone: its anchor is skipped
    for tau in (0.07, 0.5):
        got = label_based_contrastive_loss(fused, labels, tau).item()
        assert got == pytest.approx(naive_supervised_contrastive(list(fused), labels.tolist(), tau), abs=1e-6, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macl_matches_naive_loop_over_3b_samples(seed):
    generator = torch.Generator().manual_seed(seed)
    image, text, fused = (torch.randn(9, 5, generator=generator, dtype=torch.float64) for _ in range(3))
    labels = torch.tensor([2, 0, 1, 1, 0, 2, 2, 0, 3])
    samples = [*image, *text, *fused]  # 3B samples, each with its pair's label
    for tau in (0.07, 0.5):
        got = modality_agnostic_contrastive_loss(image, text, fused, labels, tau).item()
        expected = naive_supervised_contrastive(samples, labels.tolist() * 3, tau)
        assert got == pytest.approx(expected, abs=1e-6, rel=1e-9)


def test_macl_depends_on_which_embedding_plays_which_role_only_through_the_pooled_set():
    # Modality-agnostic: swapping the image and text roles leaves the loss unchanged.
    generator = torch.Generator().manual_seed(4)
    image, text, fused = (torch.randn(6, 4, generator=generator) for _ in range(3))
    labels = torch.tensor([0, 1, 0, 1, 2, 2])
    a = modality_agnostic_contrastive_loss(image, text, fused, labels)
    b = modality_agnostic_contrastive_loss(text, fused, image, labels)
    torch.testing.assert_close(a, b)


def test_macl_of_one_pair_is_finite_and_has_gradients():
    image, text, fused = (torch.randn(1, 4, requires_grad=True) for _ in range(3))
    loss = modality_agnostic_contrastive_loss(image, text, fused, torch.tensor([1]))
    loss.backward()
    assert math.isfinite(loss.item()) and all(torch.isfinite(t.grad).all() for t in (image, text, fused))
