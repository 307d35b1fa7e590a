"""Readers for the free public emotional-speech corpora, by each corpus's published folder and file-name convention.

Every reader returns the corpus table of `helpers.data.corpora` (`CORPUS_COLUMNS`, `duration` NaN until
`validate_corpus` measures it) with the label taken from the file name (TESS: the folder name). The conventions:

- RAVDESS (Livingstone & Russo 2018, zenodo.org/records/1188976): `Actor_NN/MM-VV-EE-II-SS-RR-AA.wav`, modality,
  vocal channel, emotion, intensity, statement, repetition, actor (odd male, even female); audio-only speech is 03-01.
- CREMA-D (Cao et al. 2014, github.com/CheyneyComputerScience/CREMA-D): `AudioWAV/SSSS_SEN_EMO_LVL.wav`, actor
  1001-1091, sentence code, emotion ANG DIS FEA HAP NEU SAD, level LO MD HI XX; sex in `VideoDemographics.csv`.
- TESS (Dupuis & Pichora-Fuller 2010, doi:10.5683/SP2/E8H2MF): `OAF_<emotion>/OAF_<word>_<emotion>.wav` and the same
  for YAF; two actresses (OAF older, YAF younger), seven emotions, spelled in several ways across releases.
- EmoDB (Burkhardt et al. 2005, emodb.bilderbar.info): `wav/SSTTTEV.wav`, speaker 03-16, text a01..b10, German
  emotion letter (W Ärger, L Langeweile, E Ekel, A Angst, F Freude, T Trauer, N neutral), version letter.

Labels: `label_map=None` keeps the corpus's classes that are in `classes` (default: the paper's four IEMOCAP classes
`EMOTIONS`), `label_map="all"` keeps every class of the corpus (`ALL_CLASSES`), a dict maps the corpus's English class
names to target classes. Labels left unmapped are dropped and counted in `attrs["dropped_labels"]`, as
`read_manifest` does. Nothing is left out silently: `attrs` also records malformed file names (`malformed`), files
outside the clips the corpus defines (`skipped`), non-wav files (`ignored_files`), names that disagree with their
folder (`mismatched`), repeated ids (`duplicates`) and each speaker's sex where the corpus says it (`speaker_gender`);
`attrs["label_map"]` is the map applied (corpus class -> class).
`read_corpus("ravdess:/data/ravdess")` picks a reader by name, or by the folder's layout for a bare path.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from ..labels import EMOTIONS
from .corpora import IEMOCAP_LABELS, CorpusError, corpus_table, manifest_records, read_iemocap, read_manifest

__all__ = [
    "ALL_CLASSES",
    "CONVENTIONS",
    "CORPUS_READERS",
    "IEMOCAP_ALL_LABELS",
    "LabelMap",
    "parse_ravdess_name",
    "parse_cremad_name",
    "parse_tess_name",
    "parse_tess_folder",
    "parse_emodb_name",
    "read_ravdess",
    "read_cremad",
    "read_tess",
    "read_emodb",
    "detect_corpus",
    "read_corpus",
]

LabelMap = Mapping[str, str] | Literal["all"] | None

# Every class of each corpus in English lower case; order: the paper's four IEMOCAP classes first (where the corpus
# has them), then fear, disgust, surprise, the corpus's own (calm, boredom, frustration).
ALL_CLASSES: dict[str, tuple[str, ...]] = {
    "iemocap": (*EMOTIONS, "fear", "disgust", "surprise", "frustration"),
    "ravdess": (*EMOTIONS, "fear", "disgust", "surprise", "calm"),
    "cremad": (*EMOTIONS, "fear", "disgust"),
    "tess": (*EMOTIONS, "fear", "disgust", "surprise"),
    "emodb": (*EMOTIONS, "fear", "disgust", "boredom"),
}
# IEMOCAP's named emotion codes (not `oth` other, not `xxx` no agreement); excited merged into happiness, as the paper
IEMOCAP_ALL_LABELS: dict[str, str] = {**IEMOCAP_LABELS, "fea": "fear", "dis": "disgust", "sur": "surprise",
                                      "fru": "frustration"}

CONVENTIONS: dict[str, str] = {
    "iemocap": "IEMOCAP_full_release/Session1..Session5/ (labels in dialog/EmoEvaluation/*.txt)",
    "ravdess": "Actor_NN/MM-VV-EE-II-SS-RR-AA.wav, e.g. Actor_12/03-01-05-01-01-01-12.wav "
               "(audio-only speech: modality 03, vocal channel 01)",
    "cremad": "AudioWAV/SSSS_SEN_EMO_LVL.wav, e.g. AudioWAV/1001_DFA_ANG_XX.wav",
    "tess": "OAF_<emotion>/OAF_<word>_<emotion>.wav and YAF_<emotion>/YAF_<word>_<emotion>.wav, "
            "e.g. OAF_angry/OAF_back_angry.wav",
    "emodb": "wav/SSTTTEV.wav, e.g. wav/03a01Fa.wav (speaker 03, text a01, F Freude, version a)",
    "manifest": "a .csv file with columns path,label,speaker (session, dialog optional)",
}

# ----------------------------------------------------------------------------------------------------------------
# Pure parsing of one name; each raises ValueError with the reason the name breaks the convention

_RAVDESS_MODALITY = {"01": "full-AV", "02": "video-only", "03": "audio-only"}
_RAVDESS_CHANNEL = {"01": "speech", "02": "song"}
_RAVDESS_EMOTION = {"01": "neutral", "02": "calm", "03": "happiness", "04": "sadness", "05": "anger", "06": "fear",
                    "07": "disgust", "08": "surprise"}
_RAVDESS_INTENSITY = {"01": "normal", "02": "strong"}
_RAVDESS_STATEMENT = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
_RAVDESS_ACTOR_FOLDER = re.compile(r"^actor_(\d\d)$", re.IGNORECASE)


def _stem(name: str) -> str:
    """A file name without a `.wav` ending (any case); other names are taken as they are."""
    return name[:-4] if name.lower().endswith(".wav") else name


def _code(value: str, codes: Mapping[str, str], field_name: str) -> str:
    if value not in codes:
        raise ValueError(f"unknown {field_name} code {value!r} (known: {', '.join(codes)})")
    return codes[value]


def parse_ravdess_name(name: str) -> dict[str, str]:
    """The seven fields of a RAVDESS file name (`03-01-05-01-01-01-12.wav`), decoded.

    Returns modality, channel, emotion (English class name), intensity, statement, repetition, actor ("12"), speaker
    ("Actor_12") and gender ("F": even actors are female). Raises ValueError saying which field is wrong.
    """
    fields = _stem(name).split("-")
    if len(fields) != 7:
        raise ValueError(f"{len(fields)} dash-separated field(s), expected 7 (MM-VV-EE-II-SS-RR-AA)")
    modality, channel, emotion, intensity, statement, repetition, actor = fields
    if not (actor.isdigit() and len(actor) == 2):
        raise ValueError(f"actor {actor!r} is not a two-digit number")
    if not 1 <= int(actor) <= 24:
        raise ValueError(f"actor {actor} is outside 01-24")
    if repetition not in ("01", "02"):
        raise ValueError(f"unknown repetition code {repetition!r} (known: 01, 02)")
    return dict(modality=_code(modality, _RAVDESS_MODALITY, "modality"),
                channel=_code(channel, _RAVDESS_CHANNEL, "vocal channel"),
                emotion=_code(emotion, _RAVDESS_EMOTION, "emotion"),
                intensity=_code(intensity, _RAVDESS_INTENSITY, "intensity"),
                statement=_code(statement, _RAVDESS_STATEMENT, "statement"),
                repetition=repetition, actor=actor, speaker=f"Actor_{actor}",
                gender="F" if int(actor) % 2 == 0 else "M")


_CREMAD_SENTENCES = {"IEO": "It's eleven o'clock", "TIE": "That is exactly what happened",
                     "IOM": "I'm on my way to the meeting", "IWW": "I wonder what this is about",
                     "TAI": "The airplane is almost full", "MTI": "Maybe tomorrow it will be cold",
                     "IWL": "I would like a new alarm clock", "ITH": "I think I have a doctor's appointment",
                     "DFA": "Don't forget a jacket", "ITS": "I think I've seen this before",
                     "TSI": "The surface is slick", "WSI": "We'll stop in a couple of minutes"}
_CREMAD_EMOTION = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happiness", "NEU": "neutral",
                   "SAD": "sadness"}
_CREMAD_LEVEL = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}


def parse_cremad_name(name: str) -> dict[str, str]:
    """The four fields of a CREMA-D file name (`1001_DFA_ANG_XX.wav`): speaker ("1001"), sentence (its text),
    emotion (English class name) and level. Raises ValueError saying which field is wrong."""
    fields = _stem(name).split("_")
    if len(fields) != 4:
        raise ValueError(f"{len(fields)} underscore-separated field(s), expected 4 (SSSS_SEN_EMO_LVL)")
    speaker, sentence, emotion, level = fields
    if not (speaker.isdigit() and len(speaker) == 4):
        raise ValueError(f"actor {speaker!r} is not a four-digit number")
    if not 1001 <= int(speaker) <= 1091:
        raise ValueError(f"actor {speaker} is outside 1001-1091")
    return dict(speaker=speaker, sentence=_code(sentence.upper(), _CREMAD_SENTENCES, "sentence"),
                emotion=_code(emotion.upper(), _CREMAD_EMOTION, "emotion"),
                level=_code(level.upper(), _CREMAD_LEVEL, "level"))


# TESS spellings (lower case, '-' and ' ' read as '_'): the releases differ, e.g. OAF_Fear, YAF_pleasant_surprised,
# OAF_Pleasant_surprise, and file names say `ps` for pleasant surprise
_TESS_EMOTION = {"angry": "anger", "anger": "anger", "disgust": "disgust", "disgusted": "disgust", "fear": "fear",
                 "fearful": "fear", "happy": "happiness", "happiness": "happiness", "neutral": "neutral",
                 "sad": "sadness", "sadness": "sadness", "ps": "surprise", "pleasant_surprise": "surprise",
                 "pleasant_surprised": "surprise", "pleasantsurprise": "surprise", "surprise": "surprise",
                 "surprised": "surprise"}
_TESS_SPEAKERS = ("OAF", "YAF")


def _tess_speaker(text: str) -> tuple[str, str]:
    """(speaker, rest) of a TESS name `OAF_rest`, normalised to lower case with '_' for '-' and ' '."""
    norm = re.sub(r"[-\s]", "_", text.strip()).lower()
    speaker, sep, rest = norm.partition("_")
    if speaker.upper() not in _TESS_SPEAKERS or not sep:
        raise ValueError("does not start with OAF_ or YAF_ (the two TESS speakers)")
    return speaker.upper(), rest


def parse_tess_folder(name: str) -> dict[str, str]:
    """Speaker ("OAF"/"YAF") and emotion (English class name) of a TESS folder (`OAF_angry`, `YAF_pleasant_surprised`,
    case-insensitive). Raises ValueError if either is not a TESS one."""
    speaker, emotion = _tess_speaker(name)
    if emotion not in _TESS_EMOTION:
        raise ValueError(f"folder emotion {emotion!r} is not a TESS emotion (known: {', '.join(_TESS_EMOTION)})")
    return dict(speaker=speaker, emotion=_TESS_EMOTION[emotion])


def parse_tess_name(name: str) -> dict[str, str]:
    """Speaker, word and emotion (English class name) of a TESS file name (`OAF_back_angry.wav`, `YAF_dog_ps.wav`).
    Raises ValueError if the name has no speaker prefix, no word or no known emotion at its end."""
    speaker, rest = _tess_speaker(_stem(name))
    for spelling in sorted(_TESS_EMOTION, key=len, reverse=True):  # longest first: `pleasant_surprised` before `ps`
        if rest.endswith("_" + spelling) and len(rest) > len(spelling) + 1:
            return dict(speaker=speaker, word=rest[:-len(spelling) - 1], emotion=_TESS_EMOTION[spelling])
    raise ValueError(f"{rest!r} is not <word>_<emotion> with a TESS emotion (known: {', '.join(_TESS_EMOTION)})")


_EMODB_SPEAKER_GENDER = {"03": "M", "08": "F", "09": "F", "10": "M", "11": "M", "12": "M", "13": "F", "14": "F",
                         "15": "M", "16": "F"}
_EMODB_TEXTS = ("a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10")
_EMODB_EMOTION = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness",
                  "N": "neutral"}


def parse_emodb_name(name: str) -> dict[str, str]:
    """Speaker ("03"), text ("a01"), emotion (English class name), version and gender of an EmoDB file name
    (`03a01Fa.wav`). Raises ValueError saying which part is wrong."""
    stem = _stem(name)
    if len(stem) != 7:
        raise ValueError(f"{len(stem)} characters, expected 7 (SSTTTEV)")
    speaker, text, emotion, version = stem[:2], stem[2:5], stem[5], stem[6]
    if not speaker.isdigit():
        raise ValueError(f"speaker {speaker!r} is not a number")
    if speaker not in _EMODB_SPEAKER_GENDER:
        raise ValueError(f"speaker {speaker} is not an EmoDB speaker ({', '.join(_EMODB_SPEAKER_GENDER)})")
    if text not in _EMODB_TEXTS:
        raise ValueError(f"unknown text code {text!r} (known: {', '.join(_EMODB_TEXTS)})")
    if not (version.isascii() and version.isalpha() and version.islower()):
        raise ValueError(f"version {version!r} is not a lower-case letter")
    return dict(speaker=speaker, text=text, emotion=_code(emotion, _EMODB_EMOTION, "emotion"), version=version,
                gender=_EMODB_SPEAKER_GENDER[speaker])


# ----------------------------------------------------------------------------------------------------------------
# Labels


def _label_mapping(corpus: str, label_map: LabelMap, classes: Sequence[str] | None) -> tuple[dict[str, str],
                                                                                           tuple[str, ...]]:
    """(corpus class -> target class, classes) for one reader call; a target outside `classes` is refused."""
    names = ALL_CLASSES[corpus]
    if label_map is None:
        # RAVDESS calm stays apart from neutral (and so is dropped): merging it is a choice, pass a label_map for it
        classes = tuple(EMOTIONS if classes is None else classes)
        mapping = {c: c for c in names if c in classes}
        if not mapping:
            raise CorpusError(f"{corpus}: none of classes={list(classes)} is a class of the corpus ({list(names)})")
    elif isinstance(label_map, str):
        if label_map != "all":
            raise CorpusError(f"label_map={label_map!r}: pass None (the classes in `classes`), 'all' or a dict")
        classes = tuple(names if classes is None else classes)
        mapping = {c: c for c in names}
    else:
        unknown = sorted(set(label_map) - set(names))
        if unknown:
            raise CorpusError(f"label_map keys {unknown} are not {corpus} classes; its classes are {list(names)}")
        classes = tuple(EMOTIONS if classes is None else classes)
        mapping = dict(label_map)
    unknown_targets = sorted(set(mapping.values()) - set(classes))
    if unknown_targets:
        raise CorpusError(f"label_map maps to {unknown_targets}, which are not among classes={list(classes)}")
    return mapping, classes


# ----------------------------------------------------------------------------------------------------------------
# Walking a corpus folder


@dataclass
class _Walk:
    """Everything one pass over a corpus's folders found: the clips' rows and what was left out, and why."""

    corpus: str
    mapping: dict[str, str]
    rows: list[dict] = field(default_factory=list)
    malformed: list[tuple[str, str]] = field(default_factory=list)
    mismatched: list[tuple[str, str]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    ignored: int = 0
    wavs: int = 0

    def wav_files(self, folder: Path) -> list[Path]:
        """The .wav files in `folder` (sorted); other files, and hidden ones (macOS `._x.wav`), counted as ignored."""
        found = []
        for path in sorted(folder.iterdir()):
            if not path.is_file():
                continue
            if path.name.startswith(".") or path.suffix.lower() != ".wav":
                self.ignored += 1
            else:
                found.append(path)
        self.wavs += len(found)
        return found

    def add(self, path: Path, emotion: str, speaker: str) -> None:
        """One clip: a row if its class is mapped, else a count in `dropped`. Session = dialog = speaker."""
        if emotion not in self.mapping:
            self.dropped[emotion] += 1
            return
        self.rows.append(dict(utterance=f"{self.corpus}:{path.stem}", path=str(path), label=self.mapping[emotion],
                              speaker=speaker, session=speaker, dialog=speaker, duration=np.nan))


def _folder(root: str | Path, corpus: str) -> Path:
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise CorpusError(f"{corpus}: {root} is not a folder; a {corpus} release is laid out as {CONVENTIONS[corpus]}")
    return root


def _no_folders(root: Path, corpus: str, what: str) -> CorpusError:
    """The error for a root that lacks the corpus's folders, naming subfolders that have them if there are any."""
    below = [p for p in _subfolders(root) if _matches(p).get(corpus)]
    hint = f"; these subfolders do: {', '.join(str(p) for p in below[:3])}" if below else ""
    return CorpusError(f"{corpus}: {root} holds no {what}{hint}. A {corpus} release is laid out as "
                       f"{CONVENTIONS[corpus]}; give the folder that holds them.")


def _finish(walk: _Walk, root: Path, classes: Sequence[str], genders: Mapping[str, str]) -> pd.DataFrame:
    """The table of `walk`'s rows with what was left out in `attrs`; a CorpusError if no clip is usable."""
    corpus, convention = walk.corpus, CONVENTIONS[walk.corpus]
    if walk.wavs == 0:
        raise CorpusError(f"{corpus}: no .wav files under {root} ({walk.ignored} other file(s) ignored). A {corpus} "
                          f"release is laid out as {convention}; give the folder that holds it.")
    if len(walk.malformed) == walk.wavs:
        path, reason = walk.malformed[0]
        raise CorpusError(f"{corpus}: none of the {walk.wavs} .wav files under {root} is named by the {corpus} "
                          f"convention {convention}; the first, {Path(path).name!r}: {reason}. Give the folder of a "
                          f"{corpus} release with its original file names, or read this one with another reader "
                          f"({', '.join(n for n in CORPUS_READERS if n not in (corpus, 'crema-d'))}).")
    rows, duplicates, first = [], [], {}
    for row in walk.rows:  # a second copy of a name (a misplaced file) is left out and reported
        if row["utterance"] in first:
            duplicates.append((row["path"], f"same utterance id {row['utterance']!r} as {first[row['utterance']]}"))
        else:
            first[row["utterance"]] = row["path"]
            rows.append(row)
    if not rows:
        left = [f"{n} dropped as {label!r} (not mapped)" for label, n in walk.dropped.items()]
        left += [f"{n} skipped: {reason}" for reason, n in walk.skipped.items()]
        left += [f"{len(walk.malformed)} malformed"] if walk.malformed else []
        fix = ("Pass label_map='all' or a label_map to keep other classes." if walk.dropped else
               f"Give the folder of the corpus's clips ({convention}).")
        raise CorpusError(f"{corpus}: no usable clip under {root}: of {walk.wavs} .wav files, {'; '.join(left)}. "
                          + fix)
    table = corpus_table(rows, source=str(root))
    speakers = set(table["speaker"])
    table.attrs.update(corpus=corpus, classes=list(classes), label_map=dict(walk.mapping),
                       dropped_labels=dict(walk.dropped),
                       malformed=list(walk.malformed), skipped=dict(walk.skipped), ignored_files=walk.ignored,
                       mismatched=list(walk.mismatched), duplicates=duplicates,
                       speaker_gender={s: g for s, g in sorted(genders.items()) if s in speakers})
    problems = [f"{len(v)} {k}" for k, v in (("malformed", walk.malformed), ("mismatched", walk.mismatched),
                                              ("duplicates", duplicates)) if v]
    if problems:
        path, reason = (walk.malformed or walk.mismatched or duplicates)[0]
        warnings.warn(f"{corpus}: {', '.join(problems)} file(s) under {root}, listed in table.attrs "
                      f"(e.g. {Path(path).name}: {reason})", stacklevel=3)
    return table


# ----------------------------------------------------------------------------------------------------------------
# Readers


def read_ravdess(root: str | Path, *, label_map: LabelMap = None,
                 classes: Sequence[str] | None = None) -> pd.DataFrame:
    """RAVDESS (`Actor_NN/MM-VV-EE-II-SS-RR-AA.wav`; `root` holds the Actor folders, or is one) as a corpus table.

    Clips are the audio-only speech files (modality 03, vocal channel 01); other .wav files (song, the audio of
    video files) are counted in `attrs["skipped"]` by reason. The name's actor field is the speaker ("Actor_12"),
    its parity the sex; a file whose actor differs from its folder's is kept under the name's actor and listed in
    `attrs["mismatched"]`. Calm is its own class, not neutral (pass a label_map to merge it).
    """
    root = _folder(root, "ravdess")
    mapping, classes = _label_mapping("ravdess", label_map, classes)
    folders = [root] if _RAVDESS_ACTOR_FOLDER.match(root.name) else sorted(
        p for p in root.iterdir() if p.is_dir() and _RAVDESS_ACTOR_FOLDER.match(p.name))
    if not folders:
        raise _no_folders(root, "ravdess", "Actor_01..Actor_24 folders")
    walk, genders = _Walk("ravdess", mapping), {}
    for folder in folders:
        for path in walk.wav_files(folder):
            try:
                fields = parse_ravdess_name(path.name)
            except ValueError as err:
                walk.malformed.append((str(path), str(err)))
                continue
            if fields["modality"] != "audio-only":
                walk.skipped[f"modality {fields['modality']}, not audio-only (03)"] += 1
                continue
            if fields["channel"] != "speech":
                walk.skipped["vocal channel 02 (song), not speech (01)"] += 1
                continue
            if fields["speaker"].lower() != folder.name.lower():
                walk.mismatched.append((str(path), f"actor {fields['actor']} in a folder named {folder.name}"))
            genders[fields["speaker"]] = fields["gender"]
            walk.add(path, fields["emotion"], fields["speaker"])
    return _finish(walk, root, classes, genders)


def _cremad_genders(demographics: Path) -> dict[str, str]:
    """Speaker -> "F"/"M" from CREMA-D's `VideoDemographics.csv` (columns ActorID, Sex: Male/Female)."""
    with open(demographics, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("ActorID", "Sex") if c not in (reader.fieldnames or [])]
        if missing:
            raise CorpusError(f"{demographics}: header {reader.fieldnames} lacks {missing}; CREMA-D's demographics "
                              "file has columns ActorID,Age,Sex,Race,Ethnicity (fix it, or remove it to go without)")
        sexes = {"male": "M", "m": "M", "female": "F", "f": "F"}
        return {row["ActorID"].strip(): sexes[row["Sex"].strip().lower()] for row in reader
                if (row["Sex"] or "").strip().lower() in sexes}


def read_cremad(root: str | Path, *, label_map: LabelMap = None,
                classes: Sequence[str] | None = None) -> pd.DataFrame:
    """CREMA-D (`AudioWAV/SSSS_SEN_EMO_LVL.wav`; `root` is the folder holding AudioWAV, or AudioWAV) as a corpus
    table. The speaker is the actor number ("1001"); their sex comes from `VideoDemographics.csv` next to AudioWAV
    when it is there (`attrs["speaker_gender"]` is empty without it)."""
    root = _folder(root, "cremad")
    mapping, classes = _label_mapping("cremad", label_map, classes)
    folder = next((p for p in root.iterdir() if p.is_dir() and p.name.lower() == "audiowav"), root)
    demographics = folder.parent / "VideoDemographics.csv"
    genders = _cremad_genders(demographics) if demographics.is_file() else {}
    walk = _Walk("cremad", mapping)
    for path in walk.wav_files(folder):
        try:
            fields = parse_cremad_name(path.name)
        except ValueError as err:
            walk.malformed.append((str(path), str(err)))
            continue
        walk.add(path, fields["emotion"], fields["speaker"])
    return _finish(walk, root, classes, genders)


def read_tess(root: str | Path, *, label_map: LabelMap = None, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """TESS (`OAF_<emotion>/OAF_<word>_<emotion>.wav`, the same for YAF; `root` holds those folders) as a corpus table.

    The label is the folder's emotion (spellings of all releases accepted, any case); a file whose name says another
    emotion or speaker is kept under its folder's and listed in `attrs["mismatched"]`. Both speakers are female.
    """
    root = _folder(root, "tess")
    mapping, classes = _label_mapping("tess", label_map, classes)
    folders = [root] if root.name.upper().startswith(("OAF_", "YAF_")) else sorted(
        p for p in root.iterdir() if p.is_dir() and p.name.upper().startswith(("OAF_", "YAF_")))
    if not folders:
        raise _no_folders(root, "tess", "OAF_<emotion> or YAF_<emotion> folders")
    walk = _Walk("tess", mapping)
    for folder in folders:
        paths = walk.wav_files(folder)
        try:
            own = parse_tess_folder(folder.name)
        except ValueError as err:
            walk.malformed += [(str(p), f"folder {folder.name!r}: {err}") for p in paths]
            continue
        for path in paths:
            try:
                fields = parse_tess_name(path.name)
            except ValueError as err:
                walk.malformed.append((str(path), str(err)))
                continue
            differ = [f"{k} {fields[k]!r}" for k in ("speaker", "emotion") if fields[k] != own[k]]
            if differ:
                walk.mismatched.append((str(path), f"name says {' and '.join(differ)}, folder {folder.name} says "
                                                   f"{own['speaker']!r} {own['emotion']!r} (the folder's is used)"))
            walk.add(path, own["emotion"], own["speaker"])
    return _finish(walk, root, classes, {s: "F" for s in _TESS_SPEAKERS})


def read_emodb(root: str | Path, *, label_map: LabelMap = None,
               classes: Sequence[str] | None = None) -> pd.DataFrame:
    """EmoDB (`wav/SSTTTEV.wav`; `root` is the release folder holding wav/, or wav/ itself) as a corpus table.
    The speaker is the two-digit code ("03"), their sex from the corpus documentation."""
    root = _folder(root, "emodb")
    mapping, classes = _label_mapping("emodb", label_map, classes)
    folder = root / "wav" if (root / "wav").is_dir() else root
    walk = _Walk("emodb", mapping)
    for path in walk.wav_files(folder):
        try:
            fields = parse_emodb_name(path.name)
        except ValueError as err:
            walk.malformed.append((str(path), str(err)))
            continue
        walk.add(path, fields["emotion"], fields["speaker"])
    return _finish(walk, root, classes, _EMODB_SPEAKER_GENDER)


# ----------------------------------------------------------------------------------------------------------------
# Any corpus by name or by its layout


def _labels_for_iemocap(label_map: LabelMap, classes: Sequence[str] | None) -> dict:
    """`read_iemocap`'s arguments for this module's label_map semantics; a dict maps IEMOCAP's codes (`ang`, ...)."""
    if isinstance(label_map, str):
        _check_all(label_map)
        classes = ALL_CLASSES["iemocap"] if classes is None else classes
        return dict(label_map=IEMOCAP_ALL_LABELS, classes=tuple(classes))
    classes = tuple(EMOTIONS if classes is None else classes)
    if label_map is None:
        label_map = {code: c for code, c in IEMOCAP_ALL_LABELS.items() if c in classes}
    return dict(label_map=label_map, classes=classes)


def _labels_for_manifest(manifest: Path, label_map: LabelMap, classes: Sequence[str] | None) -> dict:
    """`read_manifest`'s arguments; `label_map="all"` keeps every non-empty label of the manifest (sorted)."""
    if isinstance(label_map, str):
        _check_all(label_map)
        _, records = manifest_records(manifest)
        labels = sorted({(rec.get("label") or "").strip() for _, rec in records} - {""})
        return dict(label_map={c: c for c in labels}, classes=tuple(labels if classes is None else classes))
    return dict(label_map=label_map, classes=tuple(EMOTIONS if classes is None else classes))


def _check_all(label_map: str) -> None:
    if label_map != "all":
        raise CorpusError(f"label_map={label_map!r}: pass None (the classes in `classes`), 'all' or a dict")


Reader = Callable[..., pd.DataFrame]
# name -> reader(root, *, label_map, classes); "crema-d" is CREMA-D's own spelling of "cremad". read_iemocap and
# read_manifest keep their own label_map defaults; read_corpus gives them this module's meaning of None and "all".
CORPUS_READERS: dict[str, Reader] = {"iemocap": read_iemocap, "ravdess": read_ravdess, "cremad": read_cremad,
                                     "crema-d": read_cremad, "tess": read_tess, "emodb": read_emodb,
                                     "manifest": read_manifest}


def _subfolders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _any_file_parses(folder: Path, parse: Callable[[str], dict]) -> bool:
    for path in folder.iterdir():
        if path.suffix.lower() == ".wav" and not path.name.startswith("."):
            try:
                parse(path.name)
                return True
            except ValueError:
                pass
    return False


def _matches(root: Path) -> dict[str, bool]:
    """Which corpus conventions the folder `root` itself follows (its immediate content only)."""
    children = _subfolders(root)
    names = {p.name.lower() for p in children}
    return dict(
        iemocap=any(re.fullmatch(r"session[1-5]", n) for n in names),
        ravdess=any(_RAVDESS_ACTOR_FOLDER.match(n) for n in names),
        cremad="audiowav" in names or root.name.lower() == "audiowav" or _any_file_parses(root, parse_cremad_name),
        tess=any(n.startswith(("oaf_", "yaf_")) for n in names),
        emodb=((root / "wav").is_dir() and _any_file_parses(root / "wav", parse_emodb_name))
        or _any_file_parses(root, parse_emodb_name),
    )


def detect_corpus(root: str | Path) -> str:
    """The reader name of the corpus laid out in folder `root` (Session1..5: iemocap, Actor_NN: ravdess, AudioWAV or
    its file names: cremad, OAF_/YAF_ folders: tess, wav/ of EmoDB names: emodb). CorpusError if none or several."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise CorpusError(f"{root} is not a folder")
    found = [name for name, hit in _matches(root).items() if hit]
    if len(found) == 1:
        return found[0]
    conventions = "\n".join(f"  {name}: {CONVENTIONS[name]}" for name in CORPUS_READERS if name != "crema-d")
    if found:
        raise CorpusError(f"{root} follows several corpus conventions ({', '.join(found)}); say which with a prefix, "
                          f"e.g. {found[0]}:{root}")
    below = [f"{p} ({name})" for p in _subfolders(root) for name, hit in _matches(p).items() if hit]
    hint = f"\nThese subfolders match: {', '.join(below[:5])}" if below else ""
    raise CorpusError(f"{root} follows none of the known corpus layouts:\n{conventions}{hint}\nGive the folder laid "
                      f"out as one of these, or say which corpus it is with a prefix, e.g. ravdess:{root}")


def read_corpus(spec: str | Path, *, label_map: LabelMap = None,
                classes: Sequence[str] | None = None) -> pd.DataFrame:
    """A corpus table from `name:/path` (a name of `CORPUS_READERS`, e.g. `ravdess:/data/ravdess`) or a bare path:
    a `.csv` file is a manifest, a folder is recognised by its layout (`detect_corpus`). `label_map` and `classes`
    go to the reader (for iemocap a dict maps IEMOCAP's codes, for a manifest its labels); `attrs["corpus"]` is the
    reader's name."""
    text = str(spec)
    prefix = re.match(r"^(?P<name>[A-Za-z][\w-]*):(?P<path>.+)$", text)
    if prefix and prefix["name"].lower() in CORPUS_READERS:
        name, path = prefix["name"].lower(), Path(prefix["path"]).expanduser().absolute()
    elif prefix and not Path(text).expanduser().exists():
        raise CorpusError(f"unknown corpus name {prefix['name']!r} in {text!r}; known: {', '.join(CORPUS_READERS)}")
    else:
        path = Path(text).expanduser().absolute()
        if path.suffix.lower() == ".csv" and not path.is_dir():
            name = "manifest"
        elif path.is_dir():
            name = detect_corpus(path)
        else:
            raise CorpusError(f"{path} does not exist; give a corpus folder, a .csv manifest, or name:/path with "
                              f"name one of {', '.join(CORPUS_READERS)}")
    name = "cremad" if name == "crema-d" else name
    if name == "iemocap":
        arguments = _labels_for_iemocap(label_map, classes)
    elif name == "manifest":
        arguments = _labels_for_manifest(path, label_map, classes)
    else:
        arguments = dict(label_map=label_map, classes=classes)
    table = CORPUS_READERS[name](path, **arguments)
    table.attrs["corpus"] = name
    if name in ("iemocap", "manifest"):  # the other readers record their classes and map themselves
        table.attrs["classes"] = list(arguments["classes"])
        applied = arguments["label_map"]
        table.attrs["label_map"] = dict(applied) if applied is not None else {c: c for c in arguments["classes"]}
    return table
