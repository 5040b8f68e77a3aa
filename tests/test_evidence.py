"""experiments.evidence: each way a verdict can refuse a claim is planted and seen."""
import math

from resnet_lib.experiments.evidence import CONTRADICTED, NOT_SHOWN, SHOWN, binomial_se, compare, mean_std


def test_a_clear_gap_over_seeds_is_shown():
    v = compare("ResNet-56", [7.0, 7.2, 7.1], "plain-56", [12.0, 12.5, 11.8], chance=90)
    assert v.status == SHOWN and v.gap > v.interval > 0 and "Shown" in v.text


def test_a_gap_inside_the_seed_spread_is_not_shown():
    v = compare("ResNet-56", [7.0, 9.0], "plain-56", [8.5, 7.6], chance=90)
    assert v.status == NOT_SHOWN and "inside its interval" in v.text


def test_the_opposite_gap_is_a_contradiction():
    v = compare("ResNet-56", [9.0, 9.1, 9.2], "ResNet-20", [8.0, 8.1, 8.2], chance=90)
    assert v.status == CONTRADICTED and v.gap < 0


def test_a_net_near_chance_is_not_counted_however_large_the_gap():
    v = compare("plain-20", [60.0, 61.0], "plain-56", [88.0, 88.5], chance=90)
    assert v.status == NOT_SHOWN and "plain-56" in v.text and "chance" in v.text


def test_a_diverged_arm_is_not_counted():
    assert compare("a", [1.0, 1.1], "b", [float("nan"), 2.0]).status == NOT_SHOWN
    v = compare("ResNet-110", [0.5, 0.6], "plain-110", [5.8e6, 3.0], unit="")
    assert v.status == NOT_SHOWN and "diverged" in v.text


def test_one_seed_has_no_measured_spread_unless_an_interval_is_given():
    assert compare("a", [7.0], "b", [9.0, 9.1]).status == NOT_SHOWN
    se = (binomial_se(7.0, 10_000), binomial_se(9.0, 10_000))
    assert compare("a", [7.0], "b", [9.0], se=se).status == SHOWN
    assert compare("a", [7.0], "b", [7.3], se=se).status == NOT_SHOWN  # 0.3 points on 10k images: inside


def test_numbers():
    assert mean_std([1, 3]) == (2.0, math.sqrt(2))
    assert mean_std([5])[1] is None
    assert abs(binomial_se(50, 100) - 5.0) < 1e-12


def test_one_seed_near_chance_is_enough_to_refuse_and_gaps_are_in_points():
    v = compare("plain-18", [66.4, 67.5], "plain-34", [78.3, 88.8], chance=90)  # mean 83.5, one seed at 88.8
    assert v.status == NOT_SHOWN and "in at least one seed" in v.text
    shown = compare("ResNet-56", [7.0, 7.2, 7.1], "plain-56", [12.0, 12.5, 11.8], chance=90)
    assert "gap +5.00 points" in shown.text and "rough interval" in shown.text
