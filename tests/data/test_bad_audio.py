"""Bad inputs the validation must name (issue 20): non-finite samples, truncated WAVs, silence, copies listed twice,
manifests with a byte-order mark, in another encoding or with empty cells; and content hashes in the cache keys."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from helpers.data import audio_checks
from helpers.data.audio_checks import audio_facts, wav_shortfall
from helpers.data.corpora import CorpusError, read_manifest, validate_corpus
from helpers.data.features import data_fingerprint
from helpers.errors import UserError


def _tone(path, seconds=1.0, *, amplitude=0.1, hz=440.0, subtype=None, rate=16000):
    """A sine tone WAV (16-bit unless `subtype` says otherwise); returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate, subtype=subtype)
    return path


def _table(rows):
    """A corpus table from (utterance, path, label, speaker) rows."""
    return pd.DataFrame([dict(utterance=u, path=str(p), label=lab, speaker=s, session=s, dialog=s, duration=np.nan)
                         for u, p, lab, s in rows])


def _reasons(err: pytest.ExceptionInfo) -> dict[str, str]:
    """{utterance: reason} from a validation error's report lines `  path (row utterance): reason`."""
    out = {}
    for line in str(err.value).splitlines()[1:]:
        if line.startswith("  ") and " (row " in line:
            row = line.split(" (row ", 1)[1]
            out[row.split("): ", 1)[0]] = row.split("): ", 1)[1]
    return out


def test_non_finite_samples_are_named(tmp_path):
    good = _tone(tmp_path / "good.wav")
    for name, bad_value in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        wave = 0.1 * np.ones(16000, np.float32)
        wave[[100, 200, 300]] = bad_value
        sf.write(tmp_path / name, wave, 16000, subtype="FLOAT")
    table = _table([("good", good, "anger", "s1"), ("nan", tmp_path / "nan.wav", "anger", "s1"),
                    ("inf", tmp_path / "inf.wav", "anger", "s2")])
    with pytest.raises(CorpusError) as err:
        validate_corpus(table, cache_dir=tmp_path / "cache")
    reasons = _reasons(err)
    assert set(reasons) == {"nan", "inf"}
    assert reasons["nan"].startswith("3 non-finite samples (NaN or Inf)")
    assert f"{tmp_path / 'inf.wav'} (row inf): 3 non-finite samples" in str(err.value)


def test_a_truncated_wav_is_named_with_what_the_header_says(tmp_path):
    path = _tone(tmp_path / "cut.wav", seconds=1.5)
    data = path.read_bytes()
    start = data.index(b"data") + 8  # 16-bit mono at 16 kHz: 32000 bytes a second
    path.write_bytes(data[:start + 28800])  # 0.9 s of the 1.5 s the header announces
    assert wav_shortfall(path) == ("truncated: the header says 48000 bytes of audio (1.50 s), the file holds 28800 "
                                   "(0.90 s)")
    assert wav_shortfall(_tone(tmp_path / "whole.wav")) is None
    assert sf.info(str(path)).frames == 14400  # soundfile alone reads it short without a word
    with pytest.raises(CorpusError) as err:
        validate_corpus(_table([("cut", path, "anger", "s1"), ("whole", tmp_path / "whole.wav", "anger", "s1")]),
                        cache_dir=tmp_path / "cache")
    assert _reasons(err) == {"cut": "truncated: the header says 48000 bytes of audio (1.50 s), the file holds 28800 "
                                    "(0.90 s)"}


def test_silence_is_a_problem_and_quiet_speech_is_not(tmp_path):
    table = _table([("zero", _tone(tmp_path / "zero.wav", amplitude=0.0), "anger", "s1"),
                    ("hum", _tone(tmp_path / "hum.wav", amplitude=3e-4), "anger", "s1"),  # about -70 dBFS
                    ("quiet", _tone(tmp_path / "quiet.wav", amplitude=0.01), "anger", "s1")])  # about -40 dBFS
    with pytest.raises(CorpusError) as err:
        validate_corpus(table, cache_dir=tmp_path / "cache")
    reasons = _reasons(err)
    assert set(reasons) == {"zero", "hum"}
    assert reasons["zero"] == "silent (peak -inf dBFS, below -60 dBFS)"
    assert reasons["hum"] == "silent (peak -70 dBFS, below -60 dBFS)"


def test_a_file_listed_twice_and_a_copy_under_another_path_are_named_with_both_rows(tmp_path):
    a, b, c = (_tone(tmp_path / f"{n}.wav", hz=hz) for n, hz in (("a", 300), ("b", 400), ("c", 500)))
    shutil.copy(b, tmp_path / "b_copy.wav")
    table = _table([("m:2:a", a, "anger", "s1"), ("m:3:a", a, "anger", "s1"),  # listed twice, same label: 2nd bad
                    ("m:4:b", b, "anger", "s1"), ("m:5:b_copy", tmp_path / "b_copy.wav", "sadness", "s2"),
                    ("m:6:c", c, "neutral", "s2")])
    with pytest.raises(CorpusError) as err:
        validate_corpus(table, cache_dir=tmp_path / "cache")
    reasons = _reasons(err)
    assert set(reasons) == {"m:3:a", "m:4:b", "m:5:b_copy"}
    assert reasons["m:3:a"] == f"duplicate: the same file is also listed as {a} (row m:2:a)"
    assert reasons["m:4:b"] == (f"duplicate: the same audio (content) as {tmp_path / 'b_copy.wav'} (row m:5:b_copy); "
                                "the copies disagree on label/speaker (anger/s1, sadness/s2)")
    assert reasons["m:5:b_copy"].startswith(f"duplicate: the same audio (content) as {b} (row m:4:b)")
    kept, report = validate_corpus(table, on_bad="skip", cache_dir=tmp_path / "cache")
    assert list(kept["utterance"]) == ["m:2:a", "m:6:c"] and report.skipped == 3
    assert kept.attrs["validation"]["skipped"] == 3


def test_content_hashes_are_computed_once_and_enter_the_data_key(tmp_path, monkeypatch):
    paths = [_tone(tmp_path / "audio" / f"{i}.wav", hz=300 + 50 * i) for i in range(3)]
    table = _table([(f"u{i}", p, "anger", f"s{i}") for i, p in enumerate(paths)])
    cache = tmp_path / "cache"
    first, _ = validate_corpus(table, cache_dir=cache)
    assert len(list((cache / "audio-checks").glob("*.json"))) == 1  # one small JSON for the folder
    calls = []
    real = audio_checks.read_audio_facts
    monkeypatch.setattr(audio_checks, "read_audio_facts", lambda p: calls.append(p) or real(p))
    again, _ = validate_corpus(table, cache_dir=cache)
    assert calls == [] and list(again["sha256"]) == list(first["sha256"])  # reused: path, size, mtime unchanged
    # edit one file in place: same size and duration, other samples (and a later modification time)
    before = os.stat(paths[1])
    _tone(paths[1], hz=1000)
    os.utime(paths[1], ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    assert os.path.getsize(paths[1]) == before.st_size
    edited, _ = validate_corpus(table, cache_dir=cache)
    assert calls == [str(paths[1])]  # only the changed file is read again
    assert edited["sha256"][1] != first["sha256"][1] and edited["duration"].equals(first["duration"])
    assert data_fingerprint(edited) != data_fingerprint(first)
    # the demo corpus keeps its keys: its folder is named by its settings and checked against its own hashes
    first.attrs["corpus"] = edited.attrs["corpus"] = "demo"
    assert data_fingerprint(edited) == data_fingerprint(first) == data_fingerprint(first.drop(columns="sha256"))


def test_an_unreadable_audio_check_cache_is_redone(tmp_path):
    path = _tone(tmp_path / "a.wav")
    audio_facts([path], cache_dir=tmp_path / "cache")
    (store,) = (tmp_path / "cache" / "audio-checks").glob("*.json")
    store.write_text('{"version": 1, "files": {"a.wav": ')
    facts = audio_facts([path], cache_dir=tmp_path / "cache")
    assert facts[str(path)]["frames"] == 16000 and store.read_text().startswith("{")


def test_a_manifest_with_a_byte_order_mark_reads(tmp_path):
    _tone(tmp_path / "a.wav")
    (tmp_path / "m.csv").write_bytes("path,label,speaker\na.wav,anger,spk1\n".encode("utf-8-sig"))
    table = read_manifest(tmp_path / "m.csv")
    assert list(table["path"]) == [str(tmp_path / "a.wav")] and list(table["speaker"]) == ["spk1"]


def test_a_manifest_not_in_utf8_names_the_byte_line_and_fix(tmp_path):
    text = "path,label,speaker\na.wav,anger,spk1\nb.wav,anger,Ren\u00e9e\n"
    (tmp_path / "m.csv").write_bytes(text.encode("latin-1"))
    offset = text.index("\u00e9")
    with pytest.raises(UserError, match=rf"m\.csv: byte {offset} \(line 3\) is b'\\xe9', not UTF-8 text; save the "
                                        r"manifest as UTF-8"):
        read_manifest(tmp_path / "m.csv")


def test_empty_manifest_cells_name_the_line_and_column(tmp_path):
    (tmp_path / "m.csv").write_text("path,label,speaker\na.wav,anger,spk1\n,anger,spk1\nc.wav, ,\n")
    with pytest.raises(CorpusError) as err:
        read_manifest(tmp_path / "m.csv")
    assert str(err.value) == (f"{tmp_path / 'm.csv'}: 3 empty required cell(s): line 3, column 'path'; line 4, "
                              "column 'label'; line 4, column 'speaker'. Fill them in, or delete those rows")
