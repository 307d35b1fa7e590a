"""The synthetic demo corpus: deterministic, cached, valid, its classes separable by design."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd
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


def test_default_demo_plan_is_separable_by_design_but_not_constant():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    plan = demo_corpus_plan()
    assert plan["speaker"].nunique() >= 10 and plan["text"].nunique() >= 5
    means = plan.groupby("label")[["pitch_range", "rate", "volume"]].mean()
    assert means.loc["sadness", "rate"] < means.loc["neutral", "rate"] < means.loc["happiness", "rate"] \
        < means.loc["anger", "rate"]
    assert means.loc["sadness", "pitch_range"] < means.loc["neutral", "pitch_range"] \
        < means.loc["anger", "pitch_range"] < means.loc["happiness", "pitch_range"]
    settings = ["pitch", "pitch_range", "rate", "volume"]
    assert (plan.groupby("label")[settings].std() > 0).all().all()  # clips vary within a class
    # the design's promise (issue 16): the settings themselves separate the classes across speakers
    predicted = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                                  plan[settings].to_numpy(float), plan["label"], groups=plan["speaker"],
                                  cv=LeaveOneGroupOut())
    recall = pd.crosstab(plan["label"], predicted, normalize="index")
    assert np.mean([recall.loc[c, c] for c in recall.index]) >= 0.95


def test_demo_settings_are_validated():
    with pytest.raises(ValueError, match="n_speakers"):
        DemoCorpusSettings(n_speakers=3)


def test_the_papers_four_emotions_keep_the_corpus_key_cached_runs_were_made_with():
    """Known answers: the keys of the default and the small corpus before other emotions could be asked for."""
    assert DemoCorpusSettings().fingerprint() == "243ae02fdd4b"
    assert SMALL.fingerprint() == "7eb44683adec"
    assert DemoCorpusSettings(emotions=("sadness", "neutral", "happiness", "anger")).fingerprint() == "243ae02fdd4b"
    assert DemoCorpusSettings(emotions=SIX).fingerprint() not in ("243ae02fdd4b", SMALL.fingerprint())


SIX = ("anger", "happiness", "neutral", "sadness", "fear", "disgust")


def test_six_emotion_plan_is_separable_by_design_and_the_first_four_unchanged():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    plan = demo_corpus_plan(DemoCorpusSettings(emotions=("disgust", *SIX[:5])))  # any order: the demo's order
    assert list(dict.fromkeys(plan["label"])) == list(SIX)
    assert (plan.groupby(["speaker", "label"]).size() == 6).all()
    four = demo_corpus_plan()
    assert set(four["label"]) == set(EMOTIONS)
    settings = ["pitch", "pitch_range", "rate", "volume"]
    predicted = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                                  plan[settings].to_numpy(float), plan["label"], groups=plan["speaker"],
                                  cv=LeaveOneGroupOut())
    recall = pd.crosstab(plan["label"], predicted, normalize="index")
    assert np.mean([recall.loc[c, c] for c in recall.index]) >= 0.95


def test_demo_emotions_without_prosody_are_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"cannot synthesise \['joy'\].*anger, happiness, neutral, sadness, fear, "
                                         "disgust"):
        DemoCorpusSettings(emotions=("anger", "joy"))
    with pytest.raises(ValueError, match="at least two"):
        DemoCorpusSettings(emotions=("anger",))


def test_a_damaged_demo_corpus_is_rebuilt_not_blamed_on_the_user(tmp_path, caplog):
    """A file deleted from (or changed in) the project's own demo-corpus cache is the cache's damage: the folder is
    built again, and validation finds nothing wrong."""
    tiny = DemoCorpusSettings(n_speakers=2, clips_per_speaker_emotion=1)
    folder = build_demo_corpus(tiny, cache_dir=tmp_path)
    victim = sorted(folder.rglob("*.wav"))[0]
    original = victim.read_bytes()
    victim.unlink()
    with caplog.at_level("WARNING"):
        table = load_demo_corpus(tiny, cache_dir=tmp_path)
    assert victim.read_bytes() == original
    assert "1 file(s) missing, e.g. wav/" in caplog.text and "moved aside" in caplog.text
    checked, report = validate_corpus(table, cache_dir=tmp_path)
    assert len(checked) == 2 * 4 and not report.problems
    caplog.clear()
    flipped = bytearray(original)
    flipped[-2:] = bytes([flipped[-2] ^ 1, flipped[-1]])  # same size, other content
    victim.write_bytes(bytes(flipped))
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))
    with caplog.at_level("WARNING"):
        load_demo_corpus(tiny, cache_dir=tmp_path)
    assert "1 file(s) changed since the build" in caplog.text and victim.read_bytes() == original


def test_a_script_without_a_main_guard_gets_an_error_not_a_hang(tmp_path):
    """The synthesis runs in a spawned process, which imports the calling script again: a script that builds the
    demo corpus at import time used to wait forever on its own lock; now it stops, naming the fix."""
    import os
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text("from helpers.data.demo_corpus import DemoCorpusSettings, build_demo_corpus\n"
                      f"build_demo_corpus(DemoCorpusSettings(n_speakers=2, clips_per_speaker_emotion=1), "
                      f"cache_dir={str(tmp_path / 'cache')!r})\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TQDM_DISABLE": "1"})
    assert result.returncode != 0
    assert 'if __name__ == "__main__":' in result.stderr and "speech synthesis process stopped" in result.stderr
    guarded = tmp_path / "guarded.py"
    guarded.write_text("from helpers.data.demo_corpus import DemoCorpusSettings, build_demo_corpus\n"
                       "if __name__ == '__main__':\n"
                       f"    build_demo_corpus(DemoCorpusSettings(n_speakers=2, clips_per_speaker_emotion=1), "
                       f"cache_dir={str(tmp_path / 'cache')!r})\n")
    assert subprocess.run([sys.executable, str(guarded)], capture_output=True, timeout=300).returncode == 0
