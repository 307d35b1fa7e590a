"""The synthetic demo corpus and the cross-validation protocols."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from helpers.corpora import validate_corpus
from helpers.demo_corpus import DemoCorpusSettings, build_demo_corpus, demo_corpus_plan, load_demo_corpus
from helpers.models import EMOTIONS
from helpers.protocols import PROTOCOLS, fold_table, load_folds, make_folds, save_folds

SMALL = DemoCorpusSettings(n_speakers=4, clips_per_speaker_emotion=2)


def _digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.wav")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_demo_corpus_is_deterministic_and_reused(tmp_path):
    a = build_demo_corpus(SMALL, cache_dir=tmp_path / "a")
    b = build_demo_corpus(SMALL, cache_dir=tmp_path / "b")
    assert _digest(a) == _digest(b)
    stamp = (a / "manifest.csv").stat().st_mtime_ns
    assert build_demo_corpus(SMALL, cache_dir=tmp_path / "a") == a
    assert (a / "manifest.csv").stat().st_mtime_ns == stamp
    other = build_demo_corpus(DemoCorpusSettings(n_speakers=4, clips_per_speaker_emotion=2, seed=1),
                              cache_dir=tmp_path / "a")
    assert other != a and _digest(other) != _digest(a)


def test_demo_corpus_table_counts_and_validity(tmp_path):
    table = load_demo_corpus(SMALL, cache_dir=tmp_path)
    checked, report = validate_corpus(table)
    assert len(checked) == 4 * 4 * 2 and not report.problems
    assert (checked.groupby(["speaker", "label"]).size() == 2).all()
    assert set(checked["label"]) == set(EMOTIONS)
    assert checked["duration"].between(1.0, 8.0).all()
    # two speakers per session, each dialog group holds both speakers (the official split's leak structure)
    assert (checked.groupby("session")["speaker"].nunique() == 2).all()
    assert (checked.groupby("dialog")["speaker"].nunique() == 2).all()


def test_default_demo_plan_has_ten_plus_speakers_and_overlapping_prosody():
    plan = demo_corpus_plan()
    assert plan["speaker"].nunique() >= 10 and plan["text"].nunique() >= 5
    means = plan.groupby("label")[["pitch_range", "rate", "volume"]].mean()
    assert means.loc["sadness", "rate"] < means.loc["neutral", "rate"] < means.loc["anger", "rate"]
    for col in ("pitch_range", "volume"):  # overlapping: some sadness clip exceeds some anger clip
        assert plan.loc[plan.label == "sadness", col].max() > plan.loc[plan.label == "anger", col].min()


def test_demo_settings_are_validated():
    with pytest.raises(ValueError, match="n_speakers"):
        DemoCorpusSettings(n_speakers=3)


def iemocap_like(n_sessions=5, per_speaker=4):
    rows = []
    for s in range(1, n_sessions + 1):
        for gender in "FM":
            for k in range(per_speaker):
                lead = "FM"[k % 2]
                rows.append(dict(utterance=f"Ses{s:02d}{lead}_x_{gender}{k:03d}", path="", label=EMOTIONS[k % 4],
                                 speaker=f"Ses{s:02d}{gender}", session=f"Ses{s:02d}", dialog=f"Ses{s:02d}{lead}",
                                 duration=1.0))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("protocol, n_folds", [("speaker", 10), ("session", 5), ("dialog", 10)])
def test_iemocap_fold_counts(protocol, n_folds):
    assert len(make_folds(iemocap_like(), protocol)) == n_folds


@pytest.mark.parametrize("protocol", ["speaker", "session"])
def test_honest_protocols_never_share_speakers(protocol):
    table = iemocap_like()
    for fold in make_folds(table, protocol):
        test, val, train = (fold.speakers(table, s) for s in ("test", "validation", "train"))
        assert test and val and train
        assert not test & train and not test & val and not val & train
        assert not set(fold.test) & set(fold.validation)
        assert len(fold.train) + len(fold.validation) + len(fold.test) == len(table)
        assert not fold.selection_on_test


def test_speaker_protocol_validates_on_the_other_actor_of_the_session():
    table = iemocap_like()
    fold = {f.name: f for f in make_folds(table, "speaker")}["speaker-Ses03M"]
    assert fold.validation_speakers == ("Ses03F",)


def test_dialog_protocol_leaks_speakers_and_selects_on_test():
    table = iemocap_like()
    folds = make_folds(table, "dialog")
    assert all(f.selection_on_test and f.validation == f.test for f in folds)
    assert (fold_table(folds, table)["test_speakers_in_train"] == 2).all()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_folds_are_deterministic_and_round_trip(tmp_path, protocol):
    table = iemocap_like()
    folds = make_folds(table, protocol)
    assert folds == make_folds(table.sample(frac=1.0, random_state=3), protocol)
    assert load_folds(save_folds(folds, tmp_path / "folds.json")) == folds


def test_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="protocol"):
        make_folds(iemocap_like(), "random")
