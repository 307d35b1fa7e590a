"""Clip level normalisation: known levels of known signals, gain invariance, the setting reaching the cache keys."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from helpers.config import make_config
from helpers.data.features import compute_features, feature_key, whisper_feature_extractor
from helpers.data.levels import LOUDNESS_DBFS, PEAK_DBFS, active_rms_dbfs, normalise_level, peak_dbfs

RATE = 16000


def _speechlike(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """A 200 Hz tone with a 3 Hz syllable envelope and a little noise: a level that varies within the clip."""
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    return (0.2 * envelope * np.sin(2 * np.pi * 200 * t) + 0.002 * rng.standard_normal(t.size)).astype(np.float32)


def test_levels_of_known_signals():
    t = np.arange(RATE) / RATE
    sine = np.sin(2 * np.pi * 440 * t)
    assert peak_dbfs(sine) == pytest.approx(0.0, abs=1e-3)
    assert peak_dbfs(0.5 * sine) == pytest.approx(-6.0206, abs=1e-3)
    assert active_rms_dbfs(sine) == pytest.approx(-3.0103, abs=0.01)  # a full-scale sine reads -3 dBFS
    assert active_rms_dbfs(0.1 * sine) == pytest.approx(-23.0103, abs=0.01)


def test_active_rms_ignores_pauses_and_silence():
    """One sentence with 1 s of silence around it reads the level of the sentence alone, where a plain RMS drops."""
    clip = _speechlike()
    padded = np.concatenate([np.zeros(RATE, np.float32), clip, np.zeros(RATE, np.float32)])
    assert active_rms_dbfs(padded) == pytest.approx(active_rms_dbfs(clip), abs=0.05)
    plain = lambda x: 10 * np.log10(np.mean(np.asarray(x, float) ** 2))  # noqa: E731
    assert plain(padded) < plain(clip) - 4  # what a plain RMS would have done


@pytest.mark.parametrize("method, measure, target", [("peak", peak_dbfs, PEAK_DBFS),
                                                     ("loudness", active_rms_dbfs, LOUDNESS_DBFS)])
def test_normalised_clips_sit_at_the_target_whatever_their_gain(method, measure, target):
    clip = _speechlike()
    outs = [normalise_level(gain * clip, method) for gain in (0.01, 0.3, 3.0)]
    for out in outs:
        assert out.dtype == np.float32
        assert measure(out) == pytest.approx(target, abs=0.01)
    np.testing.assert_allclose(outs[0], outs[2], rtol=1e-4, atol=1e-7)  # a gain change leaves no trace


def test_none_keeps_the_clip_and_silence_is_left_alone():
    clip = 0.37 * _speechlike()
    np.testing.assert_array_equal(normalise_level(clip, "none"), clip)
    assert not np.any(normalise_level(np.zeros(RATE, np.float32), "loudness"))
    assert not np.any(normalise_level(np.zeros(RATE, np.float32), "peak"))
    with pytest.raises(ValueError, match="none, peak, loudness"):
        normalise_level(clip, "rms")


def _two_gain_corpus(tmp_path) -> pd.DataFrame:
    """One clip saved at two levels 30 dB apart, as two rows of a corpus table."""
    clip, rows = _speechlike(seed=1), []
    for i, gain in enumerate((1.0, 10 ** (-30 / 20))):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, gain * clip, RATE, subtype="FLOAT")
        rows.append(dict(utterance=f"u{i}", label="anger", speaker="s1", session="s1", dialog="d", path=str(path),
                         duration=1.0))
    return pd.DataFrame(rows)


def test_level_setting_makes_features_level_invariant_and_enters_the_cache_key(tmp_path):
    """As recorded, a 30 dB quieter copy gives other log-mels; peak- or loudness-normalised, the same ones; and
    each setting caches its own features, `none` under the key it had before the setting existed."""
    table = _two_gain_corpus(tmp_path)
    extractor = whisper_feature_extractor(SimpleNamespace(num_mel_bins=80), 1)
    raw = compute_features(table, extractor, cache_dir=tmp_path / "cache")
    assert (raw[0] - raw[1]).abs().max() > 0.5
    for level in ("peak", "loudness"):
        feats = compute_features(table, extractor, level=level, cache_dir=tmp_path / "cache")
        assert (feats[0] - feats[1]).abs().max() < 1e-3
    keys = {level: feature_key(table, extractor, level) for level in ("none", "peak", "loudness")}
    assert len(set(keys.values())) == 3
    assert sorted(p.stem for p in (tmp_path / "cache" / "features").glob("*.safetensors")) == sorted(keys.values())
    from helpers.data.features import data_fingerprint
    from helpers.io import fingerprint
    assert keys["none"] == fingerprint([data_fingerprint(table), extractor.to_dict()])


def test_level_is_a_checked_setting_that_names_its_run():
    from helpers.training.runs import run_dir_for

    with pytest.raises(ValueError, match="level"):
        make_config("smoke", level="rms")
    dirs = {level: run_dir_for(make_config("smoke", level=level), "data", device_type="cpu")
            for level in ("none", "peak", "loudness")}
    assert len(set(dirs.values())) == 3
