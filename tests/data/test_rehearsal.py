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
