"""The synthetic demo corpus: deterministic, cached, valid, with overlapping prosody."""

from __future__ import annotations

import hashlib

import pytest

from helpers.data.corpora import validate_corpus
from helpers.data.demo_corpus import DemoCorpusSettings, build_demo_corpus, demo_corpus_plan, load_demo_corpus
from helpers.labels import EMOTIONS

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
