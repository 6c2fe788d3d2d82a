"""Seed statistics of the RL benchmarks: bootstrap intervals, the sign test, paired comparisons."""

import numpy as np
import pytest

from robo_reward.stats import bootstrap_mean_ci, paired_difference, sign_test_p


def test_bootstrap_interval_brackets_the_mean_and_is_deterministic():
    x = [0.0, 0.1, 0.8, 0.3, 0.4]
    lo, hi = bootstrap_mean_ci(x)
    assert min(x) <= lo < np.mean(x) < hi <= max(x)
    assert bootstrap_mean_ci(x) == (lo, hi)
    assert bootstrap_mean_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    # a wider level gives a wider interval
    lo90, hi90 = bootstrap_mean_ci(x, level=0.9)
    assert lo <= lo90 and hi90 <= hi


def test_bootstrap_interval_covers_the_true_mean_about_as_often_as_it_says():
    rng = np.random.default_rng(1)
    hits = 0
    for i in range(200):
        lo, hi = bootstrap_mean_ci(rng.normal(2.0, 1.0, size=20), n_boot=2000, seed=i)
        hits += lo <= 2.0 <= hi
    # the percentile bootstrap runs a little short of 95% at n = 20
    assert 0.85 <= hits / 200 <= 0.99


@pytest.mark.parametrize("bad, match", [([], "no values"), ([0.1, float("nan")], "non-finite")])
def test_bootstrap_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_mean_ci(bad)


def test_sign_test_matches_the_binomial():
    assert sign_test_p(5, 0) == pytest.approx(2 / 32)
    assert sign_test_p(0, 5) == pytest.approx(2 / 32)
    assert sign_test_p(4, 1) == pytest.approx(2 * 6 / 32)
    assert sign_test_p(3, 3) == 1.0
    assert sign_test_p(0, 0) == 1.0
    assert sign_test_p(9, 1) < 0.05 < sign_test_p(8, 2)


def test_paired_difference_counts_seeds_and_refuses_unpaired_input():
    d = paired_difference([0.6, 0.1, 0.8, 0.3, 0.4], [0.0, 0.0, 0.4, 0.3, 0.1])
    assert d["mean"] == pytest.approx(0.28)
    assert (d["ahead"], d["behind"], d["level"]) == (4, 0, 1)
    assert d["sign_test_p"] == pytest.approx(2 / 16)
    assert 0.0 < d["ci95"][0] < d["mean"] < d["ci95"][1]
    with pytest.raises(ValueError, match="one per seed"):
        paired_difference([0.1, 0.2], [0.1])
