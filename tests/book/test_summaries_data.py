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
    assert "tested on its test split (its held-out speakers, sessions or dialogs)" in text  # any protocol's folds


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


def _corpus(labels, **attrs):
    table = pd.DataFrame(dict(label=labels, speaker=[f"s{i % 3}" for i in range(len(labels))]))
    table.attrs.update(attrs)
    return table


def test_corpus_summary_of_the_demo_says_nothing_was_left_out():
    from helpers.book.summaries import corpus_summary

    six = ["anger", "happiness", "neutral", "sadness", "fear", "disgust"]
    table = _corpus(six * 2, corpus="demo", source="demo corpus", classes=six, label_map={c: c for c in six},
                    dropped_labels={}, validation=dict(checked=12, skipped=0))
    text = corpus_summary(table)
    assert "12 clips from 3 speakers in 6 classes" in text and "fear (2 clips), disgust (2 clips)" in text
    assert "Chance UAR is 1/6 = 0.167" in text
    assert "None needed" in text and "Left out.** Nothing" in text and "all 12 passed validation" in text


def test_corpus_summary_measures_clip_levels_and_names_the_level_setting(tmp_path):
    """Two clips 30 dB apart: their peaks span 0.9 x 30 dB between the 5th and 95th percentiles."""
    import numpy as np
    import soundfile as sf

    from helpers.book.summaries import corpus_summary

    tone = np.sin(2 * np.pi * 220 * np.arange(16000) / 16000).astype(np.float32)
    paths = []
    for i, gain in enumerate((0.5, 0.5 * 10 ** (-30 / 20))):
        paths.append(str(tmp_path / f"c{i}.wav"))
        sf.write(paths[-1], gain * tone, 16000, subtype="FLOAT")
    table = _corpus(["anger", "sadness"], corpus="demo", source="demo corpus", classes=["anger", "sadness"],
                    label_map={}, dropped_labels={}, level="peak")
    table["path"] = paths
    text = corpus_summary(table)
    assert "clip peaks span 27.0 dB" in text and "-34.5 to -7.5 dBFS" in text
    assert "`level=peak`" in text
    table.attrs.update(level="none")
    assert "official code's choice" in corpus_summary(table)


def test_corpus_summary_lists_the_map_and_everything_dropped():
    from helpers.book.summaries import corpus_summary

    table = _corpus(["happiness", "neutral"] * 3, corpus="iemocap", source="/data/IEMOCAP", classes=["neutral",
                    "happiness"], label_map={"neu": "neutral", "hap": "happiness", "exc": "happiness"},
                    dropped_labels={"fru": 7, "xxx": 2}, malformed=[("/d/x.wav", "bad name")],
                    validation=dict(checked=6, skipped=0))
    text = corpus_summary(table)
    assert "in 2 classes, the model's outputs in this order: neutral (3 clips), happiness (3 clips)" in text
    assert "neu → neutral; hap, exc → happiness" in text
    assert "10 item(s) in all" in text and "7 label 'fru' not mapped to a class (dropped)" in text
    assert "1 file name breaks the corpus's convention (left out)" in text
