"""The data chapter's generated reading: numbers from the tables, wording that follows them."""

import numpy as np
import pandas as pd

from helpers.book.summaries import data_summary

FEATURES = ["f0_median_hz", "f0_range_st"]


def prosody(ranges):
    rows = [{"label": label, "speaker": "s", "f0_median_hz": 150.0, "f0_range_st": r}
            for label, r in ranges.items() for _ in range(3)]
    return pd.DataFrame(rows)


def test_numbers_and_strong_separation():
    text = data_summary(prosody({"anger": 5.0, "sadness": 1.0}), np.array([0.9, 1.0]), features=FEATURES,
                        fold_names=["f1", "f2"], n_classes=4)
    assert "**0.95**" in text and "f1 0.90" in text and "f2 1.00" in text and "chance 0.25" in text
    assert "separable by design" in text
    assert "*anger* (5.0 semitones)" in text and "*sadness* (1.0)" in text
    assert "logistic regression on the 2 prosody" in text


def test_weak_separation_is_said_plainly():
    text = data_summary(prosody({"anger": 2.0, "sadness": 1.0}), np.array([0.3, 0.28]), features=FEATURES,
                        fold_names=["f1", "f2"], n_classes=4)
    assert "hardly separates" in text and "separable by design" not in text
    middle = data_summary(prosody({"anger": 2.0, "sadness": 1.0}), np.array([0.5, 0.5]), features=FEATURES,
                          fold_names=["f1", "f2"], n_classes=4)
    assert "only in part" in middle


def test_unvoiced_clips_are_counted():
    table = prosody({"anger": 5.0, "sadness": 1.0})
    table.loc[0, "f0_median_hz"] = np.nan
    text = data_summary(table, np.array([0.9]), features=FEATURES, fold_names=["f1"], n_classes=4)
    assert "1 clip(s) had no voiced frame" in text
