"""espeak-ng synthesis through ctypes: deterministic, prosody-sensitive, validated."""

import numpy as np
import pytest

from helpers.data.speech_synthesis import Prosody, synthesize, synthesize_batch


def test_synthesis_gives_mono_float_audio_in_range():
    a = synthesize("The quick brown fox.", Prosody(voice="en+f3", pitch=60))
    assert a.dtype == np.float32 and a.ndim == 1 and 0.5 * 16000 < a.size < 4 * 16000
    assert 0.05 < np.abs(a).max() <= 1.0


def test_a_batch_is_repeatable_sample_for_sample():
    requests = [("The quick brown fox.", Prosody(voice="en+f3", pitch=60)),
                ("The quick brown fox.", Prosody(rate=120)),
                ("The quick brown fox.", Prosody(voice="en+f3", pitch=60))]
    first, second = synthesize_batch(requests), synthesize_batch(requests)
    assert len(first) == 3
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_slower_rate_gives_longer_audio_and_pitch_changes_the_wave():
    fast = synthesize("The quick brown fox.", Prosody(rate=220))
    slow = synthesize("The quick brown fox.", Prosody(rate=110))
    assert slow.size > 1.4 * fast.size
    low = synthesize("The quick brown fox.", Prosody(pitch=20))
    high = synthesize("The quick brown fox.", Prosody(pitch=80))
    assert not np.array_equal(low[: min(low.size, high.size)], high[: min(low.size, high.size)])


def test_sample_rate_is_honoured():
    [native] = synthesize_batch([("Hello there.", Prosody())], sample_rate=22050)
    [resampled] = synthesize_batch([("Hello there.", Prosody())], sample_rate=16000)
    assert abs(resampled.size - native.size * 16000 / 22050) <= 2


def test_bad_voice_and_settings_are_refused():
    with pytest.raises(ValueError, match="no voice"):
        synthesize("Hello.", Prosody(voice="xx+nothing"))
    with pytest.raises(ValueError, match="pitch"):
        Prosody(pitch=150)
    with pytest.raises(ValueError, match="non-empty"):
        synthesize("   ")
