"""Readers of the public emotional-speech corpora (RAVDESS, CREMA-D, TESS, EmoDB) on miniature trees laid out by each
corpus's published convention, with real tiny WAV files, malformed names and non-audio files; and `read_corpus`."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers.data.corpora import CorpusError, corpus_table, validate_corpus
from helpers.data.public_corpora import (
    ALL_CLASSES,
    CORPUS_READERS,
    detect_corpus,
    parse_cremad_name,
    parse_emodb_name,
    parse_ravdess_name,
    parse_tess_folder,
    parse_tess_name,
    read_corpus,
    read_cremad,
    read_emodb,
    read_ravdess,
    read_tess,
)
from helpers.labels import EMOTIONS


def _wav(path, *, seconds=0.3, rate=16000, channels=1):
    """A tone with a little noise drawn from the path: no two clips alike (validation refuses copies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(zlib.crc32(str(path).encode())).standard_normal(t.size)
    data = (0.1 * np.sin(2 * np.pi * 220 * t) + 0.01 * noise).astype(np.float32)
    sf.write(path, np.stack([data] * channels, axis=1) if channels > 1 else data, rate)
    return path


def _junk(path, text="not audio\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------------------------------------------
# RAVDESS

RAVDESS_CLIPS = {  # file -> label under the default map (None: dropped)
    "Actor_01/03-01-05-01-01-01-01.wav": "anger",
    "Actor_01/03-01-03-01-01-01-01.wav": "happiness",
    "Actor_01/03-01-01-01-01-01-01.wav": "neutral",
    "Actor_01/03-01-04-01-01-01-01.wav": "sadness",
    "Actor_01/03-01-02-01-01-01-01.wav": None,  # calm: not neutral by default
    "Actor_01/03-01-06-01-01-01-01.wav": None,  # fear
    "Actor_02/03-01-05-02-02-02-02.wav": "anger",  # stereo, 48 kHz
    "Actor_02/03-01-01-01-02-01-02.wav": "neutral",
    "Actor_02/03-01-07-01-01-01-02.wav": None,  # disgust
    "Actor_02/03-01-08-01-01-01-02.wav": None,  # surprise
    "Actor_03/03-01-04-01-01-01-03.wav": "sadness",
    "Actor_03/03-01-04-01-01-01-04.wav": "sadness",  # actor 04's file in Actor_03's folder
}
RAVDESS_SKIPPED = ["Actor_01/03-02-05-01-01-01-01.wav", "Actor_01/01-01-05-01-01-01-01.wav"]  # song, full-AV
RAVDESS_MALFORMED = {
    "Actor_01/03-01-09-01-01-01-01.wav": "unknown emotion code '09'",
    "Actor_01/03-01-05-01-01-01.wav": "6 dash-separated field",
    "Actor_02/03-01-05-01-01-01-xx.wav": "actor 'xx' is not a two-digit number",
}
RAVDESS_JUNK = ["Actor_01/01-01-05-01-01-01-01.mp4", "Actor_01/notes.txt", "Actor_02/._03-01-05-01-01-01-02.wav"]


def make_ravdess(root):
    for name in [*RAVDESS_CLIPS, *RAVDESS_SKIPPED, *RAVDESS_MALFORMED]:
        stereo = name.startswith("Actor_02/03-01-05")
        _wav(root / name, rate=48000 if stereo else 16000, channels=2 if stereo else 1)
    for name in RAVDESS_JUNK:
        _junk(root / name)
    _junk(root / "README.txt")  # outside the Actor folders: not looked at
    return root


def test_parse_ravdess_name_decodes_every_field():
    assert parse_ravdess_name("03-01-05-02-01-02-12.wav") == dict(
        modality="audio-only", channel="speech", emotion="anger", intensity="strong",
        statement="Kids are talking by the door", repetition="02", actor="12", speaker="Actor_12", gender="F")
    assert parse_ravdess_name("02-02-02-01-02-01-07")["channel"] == "song"
    assert parse_ravdess_name("03-01-02-01-02-01-07")["gender"] == "M"


@pytest.mark.parametrize("name, reason", [
    ("03-01-05-01-01-01.wav", "6 dash-separated"), ("04-01-05-01-01-01-12.wav", "unknown modality code '04'"),
    ("03-03-05-01-01-01-12.wav", "unknown vocal channel"), ("03-01-00-01-01-01-12.wav", "unknown emotion code '00'"),
    ("03-01-05-03-01-01-12.wav", "unknown intensity"), ("03-01-05-01-03-01-12.wav", "unknown statement"),
    ("03-01-05-01-01-03-12.wav", "unknown repetition"), ("03-01-05-01-01-01-ab.wav", "actor 'ab' is not"),
    ("03-01-05-01-01-01-25.wav", "outside 01-24"),
])
def test_parse_ravdess_name_says_what_is_wrong(name, reason):
    with pytest.raises(ValueError, match=reason):
        parse_ravdess_name(name)


def test_ravdess_default_map_rows_drops_skips_and_reports(tmp_path):
    root = make_ravdess(tmp_path / "ravdess")
    with pytest.warns(UserWarning, match="3 malformed, 1 mismatched"):
        table = read_ravdess(root)
    expected = {f"ravdess:{name.split('/')[1][:-4]}": label for name, label in RAVDESS_CLIPS.items() if label}
    assert dict(zip(table["utterance"], table["label"])) == expected
    assert list(table["utterance"]) == sorted(expected)
    assert table["utterance"].is_unique
    row = table.set_index("utterance").loc["ravdess:03-01-05-01-01-01-01"]
    assert row["path"] == str(root / "Actor_01" / "03-01-05-01-01-01-01.wav")
    assert row["speaker"] == row["session"] == row["dialog"] == "Actor_01"
    assert math.isnan(row["duration"])
    # the misplaced file keeps its own actor and is reported
    assert table.set_index("utterance").loc["ravdess:03-01-04-01-01-01-04", "speaker"] == "Actor_04"
    assert table.attrs["mismatched"] == [(str(root / "Actor_03" / "03-01-04-01-01-01-04.wav"),
                                          "actor 04 in a folder named Actor_03")]
    attrs = table.attrs
    assert attrs["corpus"] == "ravdess" and attrs["classes"] == list(EMOTIONS)
    assert attrs["dropped_labels"] == {"calm": 1, "fear": 1, "disgust": 1, "surprise": 1}
    assert attrs["skipped"] == {"vocal channel 02 (song), not speech (01)": 1,
                                "modality full-AV, not audio-only (03)": 1}
    assert attrs["ignored_files"] == 3  # .mp4, .txt, macOS ._ file; README.txt outside the Actor folders not seen
    malformed = {path: reason for path, reason in attrs["malformed"]}
    assert set(malformed) == {str(root / name) for name in RAVDESS_MALFORMED}
    for name, reason in RAVDESS_MALFORMED.items():
        assert reason in malformed[str(root / name)]
    assert attrs["speaker_gender"] == {"Actor_01": "M", "Actor_02": "F", "Actor_03": "M", "Actor_04": "F"}
    assert attrs["duplicates"] == []


def test_ravdess_all_keeps_every_class_and_dict_merges_calm(tmp_path):
    root = make_ravdess(tmp_path / "ravdess")
    with pytest.warns(UserWarning):
        every = read_ravdess(root, label_map="all")
    assert len(every) == len(RAVDESS_CLIPS)
    assert set(every["label"]) == set(ALL_CLASSES["ravdess"])
    assert every.attrs["classes"] == list(ALL_CLASSES["ravdess"]) and every.attrs["dropped_labels"] == {}
    assert ALL_CLASSES["ravdess"][:4] == EMOTIONS
    merged_map = {"anger": "anger", "happiness": "happiness", "neutral": "neutral", "calm": "neutral",
                  "sadness": "sadness"}
    with pytest.warns(UserWarning):
        merged = read_ravdess(root, label_map=merged_map)
    assert merged.set_index("utterance").loc["ravdess:03-01-02-01-01-01-01", "label"] == "neutral"
    assert merged.attrs["dropped_labels"] == {"fear": 1, "disgust": 1, "surprise": 1}
    with pytest.warns(UserWarning):
        five = read_ravdess(root, classes=(*EMOTIONS, "fear"))  # None: the corpus's classes among `classes`
    assert sorted(five["label"].unique()) == sorted((*EMOTIONS, "fear"))


def test_ravdess_table_passes_validation(tmp_path):
    with pytest.warns(UserWarning):
        table = read_ravdess(make_ravdess(tmp_path / "ravdess"))
    checked, report = validate_corpus(table, classes=EMOTIONS)
    assert len(checked) == len(table) == 8 and not report.problems
    assert report.downmixed == 1 and report.resampled == 1  # the stereo 48 kHz file
    assert checked["duration"].tolist() == pytest.approx([0.3] * 8)


def test_ravdess_wrong_label_maps_are_refused(tmp_path):
    root = make_ravdess(tmp_path / "ravdess")
    with pytest.raises(CorpusError, match=r"keys \['angry'\] are not ravdess classes"):
        read_ravdess(root, label_map={"angry": "anger"})
    with pytest.raises(CorpusError, match="not among classes"):
        read_ravdess(root, label_map={"calm": "calm"})
    with pytest.raises(CorpusError, match="'every'"):
        read_ravdess(root, label_map="every")


def test_ravdess_errors_name_the_folder_the_convention_and_the_fix(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match=r"empty holds no Actor_01\.\.Actor_24 folders.*give the folder"):
        read_ravdess(tmp_path / "empty")
    _junk(tmp_path / "noaudio" / "Actor_01" / "a.mp4")
    with pytest.raises(CorpusError, match=r"no \.wav files .*1 other file\(s\) ignored.*Actor_NN/MM-VV"):
        read_ravdess(tmp_path / "noaudio")
    _wav(tmp_path / "renamed" / "Actor_01" / "clip1.wav")
    _wav(tmp_path / "renamed" / "Actor_01" / "clip2.wav")
    with pytest.raises(CorpusError, match=r"none of the 2 \.wav files .*'clip1.wav': 1 dash-separated field.*"
                                          r"original file names"):
        read_ravdess(tmp_path / "renamed")
    _wav(tmp_path / "songs" / "Actor_01" / "03-02-05-01-01-01-01.wav")
    with pytest.raises(CorpusError, match=r"no usable clip .*1 skipped: vocal channel 02 \(song\).*Give the folder"):
        read_ravdess(tmp_path / "songs")
    _wav(tmp_path / "calm" / "Actor_01" / "03-01-02-01-01-01-01.wav")
    with pytest.raises(CorpusError, match=r"1 dropped as 'calm'.*label_map='all'"):
        read_ravdess(tmp_path / "calm")
    assert len(read_ravdess(tmp_path / "calm" / "Actor_01", label_map="all")) == 1  # one Actor folder as root


# ----------------------------------------------------------------------------------------------------------------
# CREMA-D

CREMAD_CLIPS = {"1001_DFA_ANG_XX": "anger", "1001_IEO_HAP_HI": "happiness", "1002_TIE_NEU_XX": "neutral",
                "1002_IOM_SAD_LO": "sadness", "1091_WSI_FEA_MD": None, "1091_ITS_DIS_XX": None}
CREMAD_MALFORMED = {"1001_DFA_ANG": "3 underscore-separated field", "1001_XYZ_ANG_XX": "unknown sentence code 'XYZ'",
                    "abcd_DFA_ANG_XX": "actor 'abcd' is not a four-digit number",
                    "1092_DFA_ANG_XX": "outside 1001-1091", "1001_DFA_JOY_XX": "unknown emotion code 'JOY'",
                    "1001_DFA_ANG_ZZ": "unknown level code 'ZZ'"}


def make_cremad(root, *, demographics=True):
    for stem in [*CREMAD_CLIPS, *CREMAD_MALFORMED]:
        _wav(root / "AudioWAV" / f"{stem}.wav")
    _junk(root / "AudioWAV" / "1001_DFA_ANG_XX.flv")
    if demographics:
        _junk(root / "VideoDemographics.csv", "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
                                              "1002,21,Female,Caucasian,Not Hispanic\n1091,29,Female,Asian,"
                                              "Not Hispanic\n1003,58,Male,Caucasian,Not Hispanic\n")
    return root


def test_parse_cremad_name():
    assert parse_cremad_name("1001_DFA_ANG_XX.wav") == dict(speaker="1001", sentence="Don't forget a jacket",
                                                            emotion="anger", level="unspecified")
    for stem, reason in CREMAD_MALFORMED.items():
        with pytest.raises(ValueError, match=reason):
            parse_cremad_name(f"{stem}.wav")


def test_cremad_rows_genders_malformed_and_either_root(tmp_path):
    root = make_cremad(tmp_path / "CREMA-D")
    with pytest.warns(UserWarning, match="6 malformed"):
        table = read_cremad(root)
    assert dict(zip(table["utterance"], table["label"])) == {f"cremad:{s}": lab for s, lab in CREMAD_CLIPS.items()
                                                             if lab}
    assert set(table["speaker"]) == {"1001", "1002"}
    assert table.attrs["dropped_labels"] == {"fear": 1, "disgust": 1}
    assert table.attrs["ignored_files"] == 1
    assert table.attrs["speaker_gender"] == {"1001": "M", "1002": "F"}  # only speakers in the table
    malformed = {Path(path).stem: reason for path, reason in table.attrs["malformed"]}
    assert set(malformed) == set(CREMAD_MALFORMED)
    for stem, reason in CREMAD_MALFORMED.items():
        assert reason in malformed[stem]
    with pytest.warns(UserWarning):
        inner = read_cremad(root / "AudioWAV", label_map="all")
    assert len(inner) == 6 and set(inner["label"]) == set(ALL_CLASSES["cremad"])
    assert inner.attrs["speaker_gender"] == {"1001": "M", "1002": "F", "1091": "F"}  # CSV next to AudioWAV
    checked, report = validate_corpus(table, classes=EMOTIONS)
    assert len(checked) == 4 and not report.problems


def test_cremad_without_demographics_has_no_genders_and_bad_csv_is_named(tmp_path):
    root = make_cremad(tmp_path / "c", demographics=False)
    with pytest.warns(UserWarning):
        assert read_cremad(root).attrs["speaker_gender"] == {}
    _junk(root / "VideoDemographics.csv", "Actor,Gender\n1001,Male\n")
    with pytest.raises(CorpusError, match=r"VideoDemographics.csv: header .* lacks \['ActorID', 'Sex'\]"):
        read_cremad(root)


# ----------------------------------------------------------------------------------------------------------------
# TESS

TESS_CLIPS = {  # path -> label under the default map
    "OAF_angry/OAF_back_angry.wav": "anger", "OAF_angry/OAF_bar_angry.wav": "anger",
    "OAF_Fear/OAF_back_fear.wav": None, "OAF_Pleasant_surprise/OAF_back_ps.wav": None,
    "YAF_pleasant_surprised/YAF_back_ps.wav": None, "YAF_happy/YAF_back_happy.wav": "happiness",
    "YAF_neutral/YAF_back_neutral.wav": "neutral", "YAF_sad/YAF_back_sad.wav": "sadness",
    "YAF_sad/YAF_dog_happy.wav": "sadness",  # the name says happy: the folder's sadness is used, and reported
    "OAF_disgust/OAF_back_disgust.wav": None,
}
TESS_MALFORMED = {"YAF_happy/YAF_dog.wav": "is not <word>_<emotion>", "YAF_happy/XAF_dog_happy.wav": "OAF_ or YAF_",
                  "OAF_bored/OAF_back_bored.wav": "folder 'OAF_bored': folder emotion 'bored'"}


def make_tess(root):
    for name in [*TESS_CLIPS, *TESS_MALFORMED]:
        _wav(root / name, rate=24414)
    _junk(root / "YAF_sad" / "Thumbs.db")
    _junk(root / "YAF_sad" / "YAF_back_sad.txt")
    return root


def test_parse_tess_names_and_folders_in_every_spelling():
    assert parse_tess_name("OAF_back_angry.wav") == dict(speaker="OAF", word="back", emotion="anger")
    assert parse_tess_name("YAF_dog_ps.wav")["emotion"] == "surprise"
    assert parse_tess_name("yaf_dog_pleasant_surprised")["word"] == "dog"
    assert parse_tess_folder("OAF_Fear") == dict(speaker="OAF", emotion="fear")
    assert parse_tess_folder("OAF_Pleasant-Surprise")["emotion"] == "surprise"
    assert parse_tess_folder("YAF_pleasant_surprised")["emotion"] == "surprise"
    with pytest.raises(ValueError, match="not a TESS emotion"):
        parse_tess_folder("YAF_bored")
    with pytest.raises(ValueError, match="OAF_ or YAF_"):
        parse_tess_name("MAF_dog_sad.wav")


def test_tess_labels_from_folders_mismatch_and_malformed_reported(tmp_path):
    root = make_tess(tmp_path / "TESS Toronto emotional speech set data")
    with pytest.warns(UserWarning, match="3 malformed, 1 mismatched"):
        table = read_tess(root)
    expected = {f"tess:{name.split('/')[1][:-4]}": lab for name, lab in TESS_CLIPS.items() if lab}
    assert dict(zip(table["utterance"], table["label"])) == expected
    assert table.attrs["dropped_labels"] == {"fear": 1, "surprise": 2, "disgust": 1}
    assert table.attrs["ignored_files"] == 2
    assert table.attrs["speaker_gender"] == {"OAF": "F", "YAF": "F"}
    assert set(table["speaker"]) == {"OAF", "YAF"}
    [(path, reason)] = table.attrs["mismatched"]
    assert path == str(root / "YAF_sad" / "YAF_dog_happy.wav") and "emotion 'happiness'" in reason
    malformed = {p: r for p, r in table.attrs["malformed"]}
    assert set(malformed) == {str(root / n) for n in TESS_MALFORMED}
    for name, reason in TESS_MALFORMED.items():
        assert reason in malformed[str(root / name)]
    with pytest.warns(UserWarning):
        every = read_tess(root, label_map="all")
    assert set(every["label"]) == set(ALL_CLASSES["tess"]) and len(every) == len(TESS_CLIPS)
    checked, report = validate_corpus(table, classes=EMOTIONS)
    assert len(checked) == 6 and report.resampled == 6


def test_tess_duplicate_name_is_left_out_and_reported(tmp_path):
    _wav(tmp_path / "t" / "YAF_sad" / "YAF_back_sad.wav")
    _wav(tmp_path / "t" / "YAF_Sadness" / "YAF_back_sad.wav")
    with pytest.warns(UserWarning, match="1 duplicates"):
        table = read_tess(tmp_path / "t")
    assert table["path"].tolist() == [str(tmp_path / "t" / "YAF_Sadness" / "YAF_back_sad.wav")]  # sorted first
    [(path, reason)] = table.attrs["duplicates"]
    assert path == str(tmp_path / "t" / "YAF_sad" / "YAF_back_sad.wav") and "same utterance id" in reason


# ----------------------------------------------------------------------------------------------------------------
# EmoDB

EMODB_CLIPS = {"03a01Wa": "anger", "08a02Fb": "happiness", "09b01Ta": "sadness", "10b10Na": "neutral",
               "11a04La": None, "12a05Ea": None, "13a07Ab": None}
EMODB_MALFORMED = {"03a01Xa": "unknown emotion code 'X'", "04a01Wa": "speaker 04 is not an EmoDB speaker",
                   "03a03Wa": "unknown text code 'a03'", "03a01W": "6 characters", "03a01WA": "not a lower-case"}


def make_emodb(root):
    for stem in [*EMODB_CLIPS, *EMODB_MALFORMED]:
        _wav(root / "wav" / f"{stem}.wav")
    _junk(root / "lablaut" / "03a01Wa.lablaut")
    _junk(root / "wav" / "index.html")
    return root


def test_parse_emodb_name():
    assert parse_emodb_name("03a01Fa.wav") == dict(speaker="03", text="a01", emotion="happiness", version="a",
                                                   gender="M")
    for stem, reason in EMODB_MALFORMED.items():
        with pytest.raises(ValueError, match=reason):
            parse_emodb_name(stem + ".wav")


def test_emodb_rows_genders_dropped_malformed(tmp_path):
    root = make_emodb(tmp_path / "emodb")
    with pytest.warns(UserWarning, match="5 malformed"):
        table = read_emodb(root)
    assert dict(zip(table["utterance"], table["label"])) == {f"emodb:{s}": lab for s, lab in EMODB_CLIPS.items()
                                                             if lab}
    assert table.attrs["dropped_labels"] == {"boredom": 1, "disgust": 1, "fear": 1}
    assert table.attrs["speaker_gender"] == {"03": "M", "08": "F", "09": "F", "10": "M"}
    assert table.attrs["ignored_files"] == 1  # index.html; lablaut/ is not walked
    assert {Path(p).stem for p, _ in table.attrs["malformed"]} == set(EMODB_MALFORMED)
    with pytest.warns(UserWarning):
        every = read_emodb(root / "wav", label_map="all")  # the wav folder itself as root
    assert set(every["label"]) == set(ALL_CLASSES["emodb"]) and every.attrs["classes"][-1] == "boredom"
    checked, report = validate_corpus(table, classes=EMOTIONS)
    assert len(checked) == 4 and not report.problems


# ----------------------------------------------------------------------------------------------------------------
# read_corpus: by name, by layout, and the errors


IEMOCAP_LABELS_FILE = ("[1.0 - 2.5]\tSes01F_impro01_F000\tang\t[2.0, 3.0, 3.0]\n"
                       "[3.0 - 4.5]\tSes01F_impro01_M000\tfru\t[2.0, 3.0, 3.0]\n"
                       "[5.0 - 6.5]\tSes01F_impro01_F001\texc\t[2.0, 3.0, 3.0]\n"
                       "[7.0 - 8.5]\tSes01F_impro01_M001\txxx\t[2.0, 3.0, 3.0]\n")


def make_iemocap(root):
    _junk(root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt", IEMOCAP_LABELS_FILE)
    for turn in ("F000", "M000", "F001", "M001"):
        _wav(root / "Session1" / "sentences" / "wav" / "Ses01F_impro01" / f"Ses01F_impro01_{turn}.wav")
    return root


MAKERS = {"ravdess": make_ravdess, "cremad": make_cremad, "tess": make_tess, "emodb": make_emodb,
          "iemocap": make_iemocap}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", sorted(MAKERS))
def test_read_corpus_by_prefix_and_by_layout_agree(tmp_path, name):
    root = MAKERS[name](tmp_path / "corpus")
    assert detect_corpus(root) == name
    by_prefix = read_corpus(f"{name}:{root}")
    by_layout = read_corpus(root)
    assert by_prefix.attrs["corpus"] == by_layout.attrs["corpus"] == name
    assert by_prefix.equals(by_layout) and len(by_prefix) > 0
    assert by_prefix.attrs["classes"] == list(EMOTIONS)
    checked, report = validate_corpus(by_prefix, classes=by_prefix.attrs["classes"])
    assert len(checked) == len(by_prefix) and not report.problems


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_read_corpus_aliases_label_maps_and_manifest(tmp_path):
    cremad = make_cremad(tmp_path / "c")
    table = read_corpus(f"crema-d:{cremad}", label_map="all")
    assert table.attrs["corpus"] == "cremad" and len(table) == 6
    assert set(CORPUS_READERS) == {"iemocap", "ravdess", "cremad", "crema-d", "tess", "emodb", "manifest"}
    assert detect_corpus(cremad / "AudioWAV") == "cremad"
    iemocap = make_iemocap(tmp_path / "IEMOCAP_full_release")
    assert read_corpus(iemocap)["label"].tolist() == ["anger", "happiness"]
    every = read_corpus(f"iemocap:{iemocap}", label_map="all")
    assert every["label"].tolist() == ["anger", "happiness", "frustration"]  # xxx is not a named emotion
    assert every.attrs["classes"] == list(ALL_CLASSES["iemocap"])
    _wav(tmp_path / "m" / "a.wav")
    _wav(tmp_path / "m" / "b.wav")
    _junk(tmp_path / "m" / "list.csv", "path,label,speaker\na.wav,anger,s1\nb.wav,joy,s2\n")
    manifest = read_corpus(tmp_path / "m" / "list.csv")
    assert manifest.attrs["corpus"] == "manifest" and manifest["label"].tolist() == ["anger"]
    assert manifest.attrs["dropped_labels"] == {"joy": 1}
    kept = read_corpus(f"manifest:{tmp_path / 'm' / 'list.csv'}", label_map="all")
    assert kept["label"].tolist() == ["anger", "joy"] and kept.attrs["classes"] == ["anger", "joy"]


def test_read_corpus_errors_list_the_conventions_and_the_prefix(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match=r"(?s)none of the known corpus layouts.*Actor_NN/MM-VV-EE.*AudioWAV/SSSS"
                                          r".*OAF_<emotion>.*wav/SSTTTEV.*ravdess:"):
        read_corpus(tmp_path / "empty")
    _wav(tmp_path / "other" / "recording_1.wav")
    with pytest.raises(CorpusError, match="none of the known corpus layouts"):
        read_corpus(str(tmp_path / "other"))
    make_tess(tmp_path / "download" / "TESS Toronto emotional speech set data")
    with pytest.raises(CorpusError, match=r"These subfolders match: .*speech set data \(tess\)"):
        read_corpus(tmp_path / "download")
    with pytest.raises(CorpusError, match=r"holds no OAF_<emotion>.*these subfolders do: .*TESS Toronto"):
        read_tess(tmp_path / "download")
    (tmp_path / "both" / "Actor_01").mkdir(parents=True)
    (tmp_path / "both" / "OAF_angry").mkdir()
    with pytest.raises(CorpusError, match=r"several corpus conventions \(ravdess, tess\).*prefix"):
        read_corpus(tmp_path / "both")
    with pytest.raises(CorpusError, match="unknown corpus name 'ravdes'"):
        read_corpus(f"ravdes:{tmp_path / 'empty'}")
    with pytest.raises(CorpusError, match="does not exist"):
        read_corpus(tmp_path / "missing")
    with pytest.raises(CorpusError, match="is not a folder"):
        read_corpus(f"emodb:{tmp_path / 'missing'}")


def test_corpus_table_is_public_sorts_and_refuses_repeats():
    rows = [dict(utterance=u, path=f"/{u}.wav", label="anger", speaker="s", session="s", dialog="s",
                 duration=np.nan) for u in ("b", "a")]
    assert corpus_table(rows, source="x")["utterance"].tolist() == ["a", "b"]
    with pytest.raises(CorpusError, match="appear twice"):
        corpus_table(rows + rows[:1], source="x")
