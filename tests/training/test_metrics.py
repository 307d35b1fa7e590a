"""Scores against hand-computed values."""

import numpy as np
import pytest
from scipy import stats

from helpers.training.metrics import classification_scores, summarize_folds, uar, war


def test_uar_war_and_f1_on_a_hand_worked_example():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 3])
    y_pred = np.array([0, 0, 0, 1, 1, 0, 2, 2])
    # recalls: class0 3/4, class1 1/2, class2 1/1, class3 0/1 -> UAR 0.5625; accuracy 5/8
    assert uar(y_true, y_pred) == pytest.approx(0.5625)
    assert war(y_true, y_pred) == pytest.approx(5 / 8)
    scores = classification_scores(y_true, y_pred, n_classes=4)
    # F1: c0 p=3/4 r=3/4 -> .75; c1 p=1/2 r=1/2 -> .5; c2 p=1/2 r=1 -> 2/3; c3 0
    assert scores["macro_f1"] == pytest.approx((0.75 + 0.5 + 2 / 3 + 0) / 4)
    assert scores["confusion"] == [[3, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]]


def test_perfect_and_chance_predictions():
    y = np.repeat(np.arange(4), 5)
    assert uar(y, y) == 1.0
    assert uar(y, np.zeros_like(y)) == 0.25


def test_fold_summary_t_interval():
    values = [0.6, 0.7, 0.65, 0.75]
    s = summarize_folds(values)
    assert s["mean"] == pytest.approx(0.675) and s["std"] == pytest.approx(np.std(values, ddof=1))
    half = stats.t.ppf(0.975, 3) * s["std"] / 2
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((0.675 - half, 0.675 + half))
