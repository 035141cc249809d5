"""The two-step rule: S = sigmoid(t v^T), m = mean diag, c = #(S < m), P = #same-label ordered pairs."""

import itertools
import math

import pytest
import torch

from spp_scl.heads.two_step import alignment_decision

# With t = identity, t v^T = v^T, so v = G^T lets each test write the score matrix G directly.
IDENTITY = torch.eye(3, dtype=torch.float64)
LABELS = torch.tensor([0, 0, 1])  # P = 2 * 2 + 1 * 1 = 5, so with theta = 2/3 aligned needs c >= 10/3, i.e. c >= 4


def scores_with_diagonal_1_2_3(low_off_diagonal_cells):
    # Diagonal logits 1, 2, 3: m = mean(sigmoid(1), sigmoid(2), sigmoid(3)) ~ 0.855, so the diagonal
    # entry sigmoid(1) ~ 0.731 is below m and the other two are not. Off-diagonal cells are -5
    # (sigmoid ~ 0.007, below m) when listed, else +5 (sigmoid ~ 0.993, above m).
    scores = torch.full((3, 3), 5.0, dtype=torch.float64)
    scores.fill_diagonal_(0.0)
    scores += torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    for i, j in low_off_diagonal_cells:
        scores[i, j] = -5.0
    return scores


def test_not_aligned_when_c_is_below_theta_times_p():
    scores = scores_with_diagonal_1_2_3([(0, 1), (2, 0)])  # c = 1 (diagonal) + 2 = 3 < 10/3
    decision = alignment_decision(IDENTITY, scores.T, LABELS, theta=2 / 3)
    assert (decision.below_mean_count, decision.same_label_pairs) == (3, 5)
    assert decision.aligned is False


def test_aligned_when_c_reaches_theta_times_p():
    scores = scores_with_diagonal_1_2_3([(0, 1), (2, 0), (1, 2)])  # c = 4 >= 10/3
    decision = alignment_decision(IDENTITY, scores.T, LABELS, theta=2 / 3)
    assert (decision.below_mean_count, decision.same_label_pairs) == (4, 5)
    assert decision.aligned is True


def test_equality_counts_as_aligned():
    scores = scores_with_diagonal_1_2_3([(0, 1), (2, 0)])  # c = 3 = 0.6 * 5
    assert alignment_decision(IDENTITY, scores.T, LABELS, theta=0.6).aligned is True


def test_entries_equal_to_m_do_not_count_in_c():
    """c counts the entries strictly below m: an entry that ties with m (here every entry: S is 0.5 throughout,
    so m = 0.5) is not below it, so c = 0 and the pair is not aligned; with `<=` it would count all nine."""
    zeros = torch.zeros(3, 3, dtype=torch.float64)
    decision = alignment_decision(IDENTITY, zeros, LABELS, theta=2 / 3)
    assert decision.diagonal_mean == 0.5
    assert decision.below_mean_count == 0
    assert decision.aligned is False


def test_uses_raw_embeddings_not_normalised_ones():
    # Scaling t changes sigmoid(t v^T) (it is not a cosine): here it moves entries across m.
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    v = torch.tensor([[1.0, 0.5], [0.9, 0.1]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    small = alignment_decision(t * 0.1, v, labels).below_mean_count
    large = alignment_decision(t * 10.0, v, labels).below_mean_count
    assert small != large


@pytest.mark.parametrize("seed", range(4))
def test_matches_a_plain_loop(seed):
    generator = torch.Generator().manual_seed(seed)
    t = torch.randn(9, 4, generator=generator, dtype=torch.float64)
    v = torch.randn(9, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (9,), generator=generator)
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    S = [[sig(float(t[i] @ v[j])) for j in range(9)] for i in range(9)]
    m = sum(S[i][i] for i in range(9)) / 9
    c = sum(S[i][j] < m for i, j in itertools.product(range(9), repeat=2))
    P = sum(int(labels[i] == labels[j]) for i, j in itertools.product(range(9), repeat=2))
    for theta in (0.1, 2 / 3, 1.5):
        decision = alignment_decision(t, v, labels, theta)
        assert (decision.below_mean_count, decision.same_label_pairs) == (c, P)
        assert decision.aligned == (c >= theta * P)


def test_decision_reports_m_and_the_saturated_share_of_s():
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [20.0, 0.0]])
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    decision = alignment_decision(t, v, torch.tensor([0, 1, 0]))
    similarity = torch.sigmoid(t @ v.T)
    assert decision.diagonal_mean == pytest.approx(float(similarity.diagonal().mean()))
    # t_2 . v_0 = t_2 . v_2 = 20: sigmoid(20) is exactly 1.0 in float32, 2 of the 9 entries.
    assert decision.saturated_fraction == pytest.approx(2 / 9)
    assert torch.sigmoid(torch.tensor(20.0)) == 1.0 and torch.sigmoid(torch.tensor(15.0)) < 1.0


def test_the_rule_is_decided_in_float32_under_bfloat16_autocast():
    # Under autocast t v^T would be a bfloat16 product: S would keep 8 bits of mantissa, entries would tie with m,
    # and c would change. Embeddings that come out of a bfloat16 forward are decided on as they are, in float32.
    generator = torch.Generator().manual_seed(0)
    t, v = torch.randn(64, 32, generator=generator) * 0.6, torch.randn(64, 32, generator=generator) * 0.6
    labels = torch.randint(0, 3, (64,), generator=generator)
    plain = alignment_decision(t, v, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert alignment_decision(t, v, labels) == plain
        rounded = alignment_decision(t.bfloat16(), v.bfloat16(), labels)
    assert rounded == alignment_decision(t.bfloat16().float(), v.bfloat16().float(), labels)
