"""A RAVDESS-like release made from the demo synthesis: RAVDESS's reader reads it as RAVDESS, with RAVDESS's counts."""

import soundfile as sf

from helpers.data.public_corpora import read_corpus
from helpers.data.rehearsal import write_ravdess_like


def test_ravdess_like_release_has_ravdess_layout_counts_and_lengths(tmp_path):
    folder = write_ravdess_like(tmp_path / "RAVDESS", n_actors=2, cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["Actor_01", "Actor_02"]
    four = read_corpus(f"ravdess:{folder}")
    assert sorted(four["speaker"].unique()) == ["Actor_01", "Actor_02"]
    assert four.groupby("speaker").size().tolist() == [28, 28]  # 4 neutral + 8 happiness, sadness, anger, as RAVDESS
    assert four.attrs["speaker_gender"] == {"Actor_01": "M", "Actor_02": "F"}  # odd actors male
    every = read_corpus(f"ravdess:{folder}", label_map="all")
    assert every["label"].value_counts().to_dict() == {"neutral": 8, "happiness": 16, "sadness": 16, "anger": 16,
                                                       "fear": 16, "disgust": 16}
    info = [sf.info(p) for p in every["path"]]
    assert {i.samplerate for i in info} == {48000} and {i.subtype for i in info} == {"PCM_16"}
    seconds = [i.duration for i in info]
    assert min(seconds) >= 3.3 - 1e-3 and sorted(seconds)[len(seconds) // 2] < 4.6
    stamp = (folder / "rehearsal.json").stat().st_mtime_ns
    assert write_ravdess_like(tmp_path / "RAVDESS", n_actors=2) == folder  # written once, then reused
    assert (folder / "rehearsal.json").stat().st_mtime_ns == stamp


def test_cpu_real_profile_on_a_six_actor_release_makes_three_speaker_group_folds(tmp_path):
    """The cpu-real profile: inputs fitted to the clips (RAVDESS-like: up to 4.5 s, so 5 s) within its 8 s cap,
    LoRA on the four attention projections, 3 speaker-independent folds with 2 validation speakers each."""
    from helpers.config import make_config
    from helpers.models.lora import ATTENTION_PROJECTIONS
    from helpers.training.runs import prepare_run

    folder = write_ravdess_like(tmp_path / "RAVDESS", n_actors=6, cache_dir=tmp_path / "cache")
    config = make_config("cpu-real", data=f"ravdess:{folder}")
    assert config.target_modules == ATTENTION_PROJECTIONS and config.model == "tiny.en"
    run = prepare_run(config, cache_dir=tmp_path / "cache", device_type="cpu")
    assert run.max_seconds == 5
    assert len(run.folds) == 3
    speaker = dict(zip(run.table["utterance"], run.table["speaker"]))
    for fold in run.folds:
        test, train = {speaker[u] for u in fold.test}, {speaker[u] for u in fold.train}
        assert len(fold.validation_speakers) == 2 and len(test) == 2
        assert not (set(fold.validation_speakers) | test) & train and not set(fold.validation_speakers) & test
    capped = prepare_run(make_config("cpu-real", data=f"ravdess:{folder}", fit_seconds_cap=4),
                         cache_dir=tmp_path / "cache", device_type="cpu")
    assert capped.max_seconds == 4 and capped.run_dir != run.run_dir


def test_iemocap_like_release_reads_as_iemocap_with_known_counts(tmp_path):
    """All 14 turns of `IEMOCAP_TURNS` per dialog: per dialog 10 clips in the four classes (exc merged into
    happiness) and xxx, fru, oth, sur dropped once each; the release's quirks (evaluator sub-folders beside the
    summary files, script dialogs named with an extra underscore) read as the real release does."""
    import pandas as pd

    from helpers.data.corpora import read_iemocap, validate_corpus
    from helpers.data.rehearsal import write_iemocap_like

    folder = write_iemocap_like(tmp_path / "IEMOCAP_full_release", clips_per_dialog=14,
                                cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [f"Session{s}" for s in range(1, 6)]
    labels = folder / "Session1" / "dialog" / "EmoEvaluation"
    assert sorted(p.name for p in labels.iterdir()) == [
        "Attribute", "Categorical", "Self-evaluation", "Ses01F_impro01.txt", "Ses01F_script01_1.txt",
        "Ses01M_impro01.txt", "Ses01M_script01_1.txt"]
    text = (labels / "Ses01M_script01_1.txt").read_text().splitlines()
    assert text[0] == "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"
    assert text[2].split("\t")[1:3] == ["Ses01M_script01_1_M000", "neu"]  # the leading actor speaks first
    assert text[3].startswith("C-E1:\t") and any(line.startswith("A-E1:\t") for line in text)

    table = read_iemocap(folder)
    assert len(table) == 5 * 4 * 10
    assert table.attrs["dropped_labels"] == {"xxx": 20, "fru": 20, "oth": 20, "sur": 20}
    per_speaker = pd.crosstab(table["speaker"], table["label"])
    assert sorted(per_speaker.index) == [f"Ses0{s}{g}" for s in range(1, 6) for g in "FM"]
    assert (per_speaker[["anger", "neutral", "sadness"]] == 4).all().all() and (per_speaker["happiness"] == 8).all()
    assert table.groupby("session").size().tolist() == [40] * 5
    assert table.groupby("dialog").size().tolist() == [20] * 10  # Ses01F, Ses01M, ...: the official folds' groups
    row = table.set_index("utterance").loc["Ses03M_script01_1_F002"]  # the other actor's third turn: exc
    assert (row["label"], row["speaker"], row["dialog"]) == ("happiness", "Ses03F", "Ses03M")
    assert row["path"] == str(folder / "Session3" / "sentences" / "wav" / "Ses03M_script01_1" /
                              "Ses03M_script01_1_F002.wav")
    checked, report = validate_corpus(table)
    assert report.resampled == 0 and not report.problems  # every file exists, 16 kHz mono
    assert (checked["duration"] >= 1.5 - 1e-3).all() and (checked["duration"] <= 9.0 + 1e-3).all()
    assert abs(checked["duration"] - table["duration"]).max() < 1e-3  # label times match the audio
    assert write_iemocap_like(folder, clips_per_dialog=14) == folder  # written once, then reused


def test_iemocap_like_refuses_turn_counts_it_cannot_make(tmp_path):
    import pytest

    from helpers.data.rehearsal import write_iemocap_like

    with pytest.raises(ValueError, match="clips_per_dialog=15: from 1 to 14"):
        write_iemocap_like(tmp_path / "x", clips_per_dialog=15)


def test_paper_profile_on_the_iemocap_like_release_makes_the_official_ten_leaky_dialog_folds(tmp_path):
    """The paper profile (protocol dialog) on IEMOCAP's layout: 10 folds Ses01F..Ses05M, each testing both actors
    of its dialogs, who also train (the leak), with the epoch picked on the test fold; 30 s inputs."""
    from helpers.config import make_config
    from helpers.data.rehearsal import write_iemocap_like
    from helpers.training.runs import prepare_run

    folder = write_iemocap_like(tmp_path / "IEMOCAP_full_release", clips_per_dialog=5, cache_dir=tmp_path / "cache")
    run = prepare_run(make_config("paper", data=f"iemocap:{folder}"), cache_dir=tmp_path / "cache",
                      device_type="cpu")
    assert run.max_seconds == 30 and len(run.table) == 5 * 4 * 4
    assert [f.name.split("-")[-1] for f in run.folds] == [f"Ses0{s}{g}" for s in range(1, 6) for g in "FM"]
    speaker = dict(zip(run.table["utterance"], run.table["speaker"]))
    for fold in run.folds:
        test = {speaker[u] for u in fold.test}
        assert len(fold.test) == 8 and test == {fold.name[-6:-1] + "F", fold.name[-6:-1] + "M"}
        assert test <= {speaker[u] for u in fold.train}  # the official folds' leak: test actors also train
        assert fold.selection_on_test and set(fold.validation) == set(fold.test)


def test_iemocap_like_durations_have_the_asked_median_and_mean_and_a_tail():
    import numpy as np

    from helpers.data.rehearsal import iemocap_like_durations

    lengths = iemocap_like_durations(20000, seed=1)
    assert abs(np.median(lengths) - 3.4) < 0.1 and abs(lengths.mean() - 4.5) < 0.15
    assert lengths.min() >= 0.6 and lengths.max() <= 35.0 and (lengths > 20).any()
    assert np.array_equal(lengths[:10], iemocap_like_durations(10, seed=1))  # seeded
