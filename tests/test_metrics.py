"""MOSI-convention metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cmbert_pipe.metrics import balanced_accuracy, mean_std, sentiment_metrics, weighted_f1


def test_hand_computed_example_with_ties_at_zero():
    labels = [2.0, -1.0, 0.0, 0.0, 1.5, -2.6]
    preds = [1.2, 0.3, -0.4, 0.0, 1.4, -3.5]
    m = sentiment_metrics(preds, labels)
    # acc7: round(clip) -> preds 1, 0, -0, 0, 1, -3 ; labels 2, -1, 0, 0, 2, -3 -> hits at 2,3,5
    assert m["acc7"] == pytest.approx(3 / 6)
    # has0 (>= 0): preds T T F T T F ; labels T F T T T F -> hits 0,3,4,5
    assert m["acc2_has0"] == pytest.approx(4 / 6)
    # non0 drops the two zero labels: preds > 0: T T T F ; labels > 0: T F T F -> 3/4
    assert m["acc2_non0"] == pytest.approx(3 / 4)
    # paper (> 0, all samples): preds T T F F T F ; labels T F F F T F -> 5/6
    assert m["acc2_paper"] == pytest.approx(5 / 6)
    assert m["mae"] == pytest.approx((0.8 + 1.3 + 0.4 + 0.0 + 0.1 + 0.9) / 6)
    assert m["corr"] == pytest.approx(np.corrcoef(preds, labels)[0, 1])


def test_weighted_f1_by_hand():
    truth = np.array([True, True, True, False])
    pred = np.array([True, True, False, True])
    # class True: tp 2, fp 1, fn 1 -> F1 = 4/6 ; class False: tp 0 -> 0 ; weights 3/4, 1/4
    assert weighted_f1(truth, pred) == pytest.approx(0.75 * 4 / 6)
    # non0 F1 of sentiment_metrics is this weighted F1
    m = sentiment_metrics([1.0, 1.0, -1.0, 1.0], [1.0, 2.0, 3.0, -1.0])
    assert m["f1_non0"] == pytest.approx(0.75 * 4 / 6)
    assert balanced_accuracy(truth, pred) == pytest.approx((2 / 3 + 0) / 2)


def test_rounding_boundaries_follow_numpy_half_to_even():
    # labels exactly on a boundary: 2.5 -> 2, 1.5 -> 2, -0.5 -> 0, 0.5 -> 0, -2.5 -> -2
    labels = [2.5, 1.5, -0.5, 0.5, -2.5]
    assert sentiment_metrics([2.4, 2.4, 0.4, -0.4, -1.6], labels)["acc7"] == 1.0
    assert sentiment_metrics([2.6, 1.4, -0.6, 0.6, -2.6], labels)["acc7"] == 0.0
    # clipping before rounding: 7.0 -> 3, -9 -> -3
    assert sentiment_metrics([7.0, -9.0], [3.0, -3.0])["acc7"] == 1.0


def test_constant_predictions_have_undefined_correlation_and_majority_scores():
    labels = [1.0, -1.0, -2.0]
    m = sentiment_metrics([-0.5, -0.5, -0.5], labels)
    assert math.isnan(m["corr"])
    # a constant whose centring leaves rounding noise is still constant
    assert math.isnan(sentiment_metrics([0.1] * 7, [1, 2, 3, 4, 5, 6, 8])["corr"])
    assert m["acc2_non0"] == pytest.approx(2 / 3)
    assert m["bacc2_non0"] == pytest.approx(0.5)


def test_all_zero_labels_make_non0_metrics_nan_not_a_crash():
    m = sentiment_metrics([0.1, -0.2], [0.0, 0.0])
    assert math.isnan(m["acc2_non0"]) and math.isnan(m["f1_non0"])
    assert m["acc2_has0"] == 0.5


def test_bad_input_is_an_error():
    with pytest.raises(ValueError):
        sentiment_metrics([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        sentiment_metrics([], [])


def test_mean_std_over_seeds_uses_sample_std_and_skips_nan():
    runs = [{"mae": 1.0, "corr": float("nan")}, {"mae": 2.0, "corr": 0.5},
            {"mae": 3.0, "corr": 0.7}]
    ms = mean_std(runs)
    assert ms["mae"]["mean"] == 2.0 and ms["mae"]["std"] == pytest.approx(1.0)
    assert ms["corr"]["n"] == 2 and ms["corr"]["mean"] == pytest.approx(0.6)
