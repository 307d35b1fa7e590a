"""Corpus readers (IEMOCAP tree in its exact format, CSV manifests), audio loading and the validation pass."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from helpers.data.corpora import (
    CorpusError,
    class_speaker_counts,
    load_audio,
    read_iemocap,
    read_manifest,
    validate_corpus,
)

# Real EmoEvaluation syntax: a header, then per turn a summary line and evaluator lines.
LABEL_FILE = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\t{d}_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()
C-E3:\tNeutral;\t()
A-E3:\tval 3; act 2; dom  2;\t()

[10.0100 - 11.3925]\t{d}_M000\tang\t[2.0000, 3.5000, 3.5000]
C-E2:\tAnger;\t()
C-F1:\tAnger; Frustration;\t(angry voice)

[14.8872 - 18.0175]\t{d}_F001\texc\t[4.0000, 3.5000, 3.0000]
C-E1:\tExcited;\t()

[19.2900 - 20.7875]\t{d}_M001\tfru\t[2.5000, 3.0000, 3.0000]
C-E1:\tFrustration;\t()

[21.3257 - 24.7975]\t{d}_F002\tsad\t[1.5000, 2.0000, 2.0000]
C-E2:\tSadness;\t()

[25.1400 - 27.0000]\t{d}_M002\txxx\t[2.5000, 2.5000, 2.5000]
C-E2:\tOther;\t()

[27.5000 - 29.0000]\t{d}_M003\thap\t[4.0000, 3.0000, 3.0000]
C-E2:\tHappiness;\t()
"""


def make_iemocap(root, sessions=(1, 2), dialogs=("F_impro01", "M_script01_1")):
    """A miniature IEMOCAP_full_release tree: label files, per-utterance wavs, and the folders that sit beside."""
    rng = np.random.default_rng(0)
    for s in sessions:
        session = root / f"Session{s}"
        labels = session / "dialog" / "EmoEvaluation"
        (labels / "Categorical").mkdir(parents=True)  # sub-folders that must be ignored
        (labels / "Categorical" / "ignored.txt").write_text("not a summary file\n")
        for dialog in dialogs:
            d = f"Ses{s:02d}{dialog}"
            (labels / f"{d}.txt").write_text(LABEL_FILE.format(d=d))
            wav_dir = session / "sentences" / "wav" / d
            wav_dir.mkdir(parents=True)
            for turn in ("F000", "M000", "F001", "M001", "F002", "M002", "M003"):
                sf.write(wav_dir / f"{d}_{turn}.wav", 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
    return root


def test_iemocap_fields(tmp_path):
    root = make_iemocap(tmp_path / "IEMOCAP_full_release")
    table = read_iemocap(root)
    # per dialog: neu, ang, exc->happiness, sad, hap (fru and xxx left out)
    assert len(table) == 2 * 2 * 5
    row = table.set_index("utterance").loc["Ses01F_impro01_M000"]
    assert row["label"] == "anger" and row["speaker"] == "Ses01M" and row["session"] == "Ses01"
    assert row["dialog"] == "Ses01F"
    assert row["path"] == str(root / "Session1" / "sentences" / "wav" / "Ses01F_impro01" / "Ses01F_impro01_M000.wav")
    assert row["duration"] == pytest.approx(11.3925 - 10.0100)
    assert table.set_index("utterance").loc["Ses02M_script01_1_F001", "label"] == "happiness"  # excited merged
    assert table.set_index("utterance").loc["Ses02M_script01_1_F001", "dialog"] == "Ses02M"
    assert set(table["speaker"]) == {"Ses01F", "Ses01M", "Ses02F", "Ses02M"}
    assert "Ses01F_impro01_M001" not in set(table["utterance"])  # frustration
    assert table.attrs["dropped_labels"] == {"fru": 4, "xxx": 4}  # counted per code, one of each per dialog
    counts = class_speaker_counts(table)
    assert counts.loc["total", "total"] == 20 and counts.loc["Ses01M", "anger"] == 2


def test_iemocap_without_merging_excited(tmp_path):
    root = make_iemocap(tmp_path / "r")
    table = read_iemocap(root, label_map={"ang": "anger", "hap": "happiness", "neu": "neutral", "sad": "sadness"})
    assert len(table) == 16


def test_iemocap_wrong_folder_says_which_to_give(tmp_path):
    with pytest.raises(CorpusError, match="IEMOCAP_full_release"):
        read_iemocap(tmp_path)


def test_iemocap_bad_summary_line_names_file_and_line(tmp_path):
    root = make_iemocap(tmp_path / "r", sessions=(1,), dialogs=("F_impro01",))
    label_file = root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    label_file.write_text(label_file.read_text() + "[1.0 - oops]\tSes01F_impro01_F009\n")
    with pytest.raises(CorpusError, match=r"Ses01F_impro01.txt:\d+"):
        read_iemocap(root)


def _wav(path, seconds=1.0, rate=16000, channels=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * rate)
    data = 0.1 * np.sin(np.arange(n) / rate * 2 * np.pi * 440).astype(np.float32)
    sf.write(path, np.stack([data] * channels, axis=1) if channels > 1 else data, rate)
    return path


def test_manifest_relative_paths_mapping_and_dropped_counts(tmp_path):
    _wav(tmp_path / "audio" / "a.wav")
    _wav(tmp_path / "audio" / "b.wav")
    (tmp_path / "m.csv").write_text("path,label,speaker,session\naudio/a.wav,ANG,spk1,s1\naudio/b.wav,HAP,spk2,\n"
                                    "audio/c.wav,CON,spk3,s2\naudio/d.wav,CON,spk3,s2\n")
    table = read_manifest(tmp_path / "m.csv", label_map={"ANG": "anger", "HAP": "happiness"})
    assert list(table["label"]) == ["anger", "happiness"]
    assert table["path"].iloc[0] == str(tmp_path / "audio" / "a.wav")
    assert list(table["session"]) == ["s1", "spk2"]  # a missing session falls back to the speaker
    assert table.attrs["dropped_labels"] == {"CON": 2}


def test_manifest_missing_columns_are_named(tmp_path):
    (tmp_path / "m.csv").write_text("file,label\nx.wav,anger\n")
    with pytest.raises(CorpusError, match=r"\['path', 'speaker'\]"):
        read_manifest(tmp_path / "m.csv")


def test_manifest_mapping_to_unknown_class_is_refused(tmp_path):
    (tmp_path / "m.csv").write_text("path,label,speaker\nx.wav,a,s\n")
    with pytest.raises(CorpusError, match="not among classes"):
        read_manifest(tmp_path / "m.csv", label_map={"a": "joy"})


@pytest.fixture
def faulty_corpus(tmp_path):
    """One good file and one of each fault; stereo and 44.1 kHz files are usable but counted."""
    good = _wav(tmp_path / "good.wav")
    stereo = _wav(tmp_path / "stereo.wav", channels=2)
    resample = _wav(tmp_path / "cd.wav", rate=44100)
    (tmp_path / "text.wav").write_text("this is not audio")
    _wav(tmp_path / "empty.wav", seconds=0)
    _wav(tmp_path / "short.wav", seconds=0.05)
    rows = [("good", good, "anger", "s1"), ("stereo", stereo, "neutral", "s1"), ("cd", resample, "sadness", "s2"),
            ("missing", tmp_path / "nope.wav", "anger", "s1"), ("text", tmp_path / "text.wav", "anger", "s1"),
            ("empty", tmp_path / "empty.wav", "anger", "s1"), ("short", tmp_path / "short.wav", "anger", "s1"),
            ("label", good, "boredom", "s1"), ("nospeaker", good, "anger", "")]
    return pd.DataFrame([dict(utterance=u, path=str(p), label=l, speaker=s, session=s, dialog=s, duration=np.nan)
                         for u, p, l, s in rows])


def test_validation_reports_every_fault_at_once(faulty_corpus):
    with pytest.raises(CorpusError) as err:
        validate_corpus(faulty_corpus)
    message = str(err.value)
    for path_part, reason in [("nope.wav", "missing file"), ("text.wav", "not audio"), ("empty.wav", "empty"),
                              ("short.wav", "too short"), ("good.wav", "unknown label 'boredom'"),
                              ("good.wav", "missing speaker")]:
        assert any(path_part in line and reason in line for line in message.splitlines()), (path_part, reason)
    assert "6 unusable" in message and "on_bad='skip'" in message


def test_validation_skip_keeps_good_rows_and_counts(faulty_corpus):
    table, report = validate_corpus(faulty_corpus, on_bad="skip")
    assert list(table["utterance"]) == ["good", "stereo", "cd"]
    assert report.skipped == 6 and len(report.problems) == 6
    assert report.downmixed == 1 and report.resampled == 1
    assert table["duration"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert table.attrs["validation"]["skipped"] == 6


def test_load_audio_downmixes_and_resamples(tmp_path):
    rate = 44100
    t = np.arange(rate) / rate
    left, right = np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t + np.pi)  # cancel when averaged
    sf.write(tmp_path / "st.wav", np.stack([left, 0.5 * right + left], axis=1).astype(np.float32), rate)
    wave = load_audio(tmp_path / "st.wav")
    assert wave.dtype == np.float32 and wave.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(wave))
    assert np.argmax(spectrum) == 440  # 1 s at 16 kHz: bin k is k Hz
    expected_amplitude = np.abs(1 + 0.5 * np.exp(1j * np.pi) + 1) / 2  # (left + 0.5 right + left) / 2
    assert np.abs(wave[1000:15000]).max() == pytest.approx(expected_amplitude, rel=0.02)
