"""The statistics every table shows: intervals and p-values against a direct scipy computation on fixed values, the
"n/a" rule, the seed ensemble, and the collapse flag."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from spp_scl.runs.trials.statistics import (
    collapse_reason,
    describe,
    ensemble_predictions,
    majority_macro_f1,
    mcnemar_exact,
    p_cell,
    paired_seed_test,
    spread_cell,
)

ACCURACIES = [0.81, 0.79, 0.84, 0.80, 0.83]


def test_mean_std_and_interval_match_scipy_on_fixed_values():
    summary = describe(ACCURACIES)
    expected = stats.ttest_1samp(ACCURACIES, 0.0).confidence_interval(0.95)  # another path through scipy
    assert summary["n"] == 5
    assert summary["mean"] == pytest.approx(0.814)
    assert summary["std"] == pytest.approx(stats.tstd(ACCURACIES))  # ddof=1
    assert summary["ci95"] == pytest.approx([expected.low, expected.high])
    # By hand: t(0.975, 4) = 2.7764451, s = 0.0207364, half width = t * s / sqrt(5)
    assert summary["ci95"][1] - summary["mean"] == pytest.approx(2.7764451 * 0.0207364414 / math.sqrt(5), rel=1e-6)
    assert spread_cell(summary) == "0.8140 +- 0.0207 [0.7883, 0.8397]"


def test_one_seed_or_a_deterministic_head_shows_n_a_never_zero_spread():
    one = describe([0.4467])
    assert (one["std"], one["ci95"]) == (None, None) and "one seed" in one["note"]
    same = describe([0.4467, 0.4467, 0.4467])  # the probe: every seed the same
    assert (same["std"], same["ci95"]) == (0.0, None) and "same value" in same["note"]
    for summary in (one, same):
        assert spread_cell(summary) == "0.4467 +- n/a"
        assert "0.0000" not in spread_cell(summary)
    assert spread_cell(describe([])) == "-"


def test_paired_seed_test_matches_by_seed_and_agrees_with_scipy():
    reference = {42: 0.81, 43: 0.79, 44: 0.84, 45: 0.80, 46: 0.83}
    other = {46: 0.80, 44: 0.80, 43: 0.78, 42: 0.79, 45: 0.80, 47: 0.99}  # another order, and an unmatched seed
    result = paired_seed_test(reference, other)
    differences = [reference[seed] - other[seed] for seed in (42, 43, 44, 45, 46)]
    expected = stats.ttest_1samp(differences, 0.0)  # the paired t-test is the one-sample test of the differences
    assert result["seeds"] == [42, 43, 44, 45, 46]
    assert result["p"] == pytest.approx(expected.pvalue) and result["statistic"] == pytest.approx(expected.statistic)
    assert result["mean_difference"] == pytest.approx(np.mean(differences))
    assert result["holds_at_5pct"] == (expected.pvalue < 0.05)
    assert "ttest_rel" in result["test"]


def test_paired_seed_test_does_not_apply_without_spread():
    assert paired_seed_test({42: 0.8}, {42: 0.7})["p"] is None  # one matched seed
    constant = paired_seed_test({42: 0.8, 43: 0.7}, {42: 0.7, 43: 0.6})  # the same difference at each seed
    assert constant["p"] is None and "same difference" in constant["note"]
    assert p_cell(constant) == "n/a"


def test_exact_mcnemar_matches_the_binomial_distribution():
    rng = np.random.default_rng(0)
    reference = rng.random(200) < 0.75
    other = reference.copy()
    other[:30] = ~other[:30]  # 30 discordant items
    result = mcnemar_exact(reference, other)
    only_reference = int(np.sum(reference & ~other))
    only_other = int(np.sum(~reference & other))
    assert (result["only_reference_right"], result["only_other_right"]) == (only_reference, only_other)
    assert only_reference + only_other == 30
    # Exact two-sided McNemar: twice the smaller tail of Binomial(discordant, 1/2), capped at 1.
    expected = min(1.0, 2 * stats.binom.cdf(min(only_reference, only_other), 30, 0.5))
    assert result["p"] == pytest.approx(expected)
    assert result["reference_accuracy"] == pytest.approx(reference.mean())


def test_mcnemar_marks_what_holds_at_five_percent():
    reference = np.array([True] * 20 + [False] * 5)
    other = np.array([False] * 15 + [True] * 5 + [False] * 5)  # 15 discordant, all for the reference
    result = mcnemar_exact(reference, other)
    assert result["p"] == pytest.approx(2 * 0.5**15) and result["holds_at_5pct"]
    assert p_cell(result) == "<0.0001 *" and p_cell({"p": 0.0123, "holds_at_5pct": True}) == "0.0123 *"
    same = mcnemar_exact(reference, reference)
    assert same["p"] is None and p_cell(same) == "n/a"


def test_seed_ensemble_is_the_argmax_of_mean_probabilities():
    first = np.array([[0.6, 0.4], [0.2, 0.8], [0.55, 0.45]])
    second = np.array([[0.3, 0.7], [0.3, 0.7], [0.6, 0.4]])
    assert ensemble_predictions([first, second]).tolist() == [1, 1, 0]  # 0.45/0.55, 0.25/0.75, 0.575/0.425


def test_majority_level_is_the_macro_f1_of_the_most_frequent_class():
    labels = [0] * 60 + [1] * 25 + [2] * 15
    share = 0.6  # F1 of the majority class = 2 * precision * recall / (precision + recall), recall 1
    assert majority_macro_f1(labels, 3) == pytest.approx(2 * share / (1 + share) / 3)


def test_collapse_flag():
    # One class predicted for every item.
    assert collapse_reason([[60, 0, 0], [25, 0, 0], [15, 0, 0]]) == "predicts one class"
    # Two classes predicted, but macro F1 no better than always saying the majority class.
    weak = [[59, 0, 1], [25, 0, 0], [15, 0, 0]]
    reason = collapse_reason(weak)
    assert reason is not None and reason.startswith("macro F1") and "majority-class level 0.2500" in reason
    # A head that learned something is not flagged.
    assert collapse_reason([[50, 5, 5], [5, 15, 5], [3, 2, 10]]) is None
