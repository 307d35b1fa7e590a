"""Corpora as one table of utterances, audio loading at 16 kHz mono, and one validation pass over a corpus.

A corpus is a `pandas.DataFrame` with one row per utterance and the columns `CORPUS_COLUMNS`:
`utterance` (unique id), `path` (absolute), `label` (one of the class names), `speaker`, `session`, `dialog`
(the grouping the official code's folds use), `duration` (seconds). Readers: `read_iemocap`, `read_manifest`;
the synthetic corpus lives in `helpers.demo_corpus`.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import soundfile as sf
from scipy.signal import resample_poly

from ..errors import UserError
from ..labels import EMOTIONS, SAMPLE_RATE
from .audio_checks import SILENCE_DBFS, audio_facts, peak_dbfs

__all__ = [
    "CORPUS_COLUMNS",
    "IEMOCAP_LABELS",
    "CorpusError",
    "Problem",
    "ValidationReport",
    "corpus_table",
    "read_iemocap",
    "read_manifest",
    "manifest_records",
    "load_audio",
    "validate_corpus",
    "class_speaker_counts",
    "left_out_table",
    "sample_per_class",
    "example_clips",
]

CORPUS_COLUMNS = ("utterance", "path", "label", "speaker", "session", "dialog", "duration")
# IEMOCAP's categorical codes -> the paper's classes; excited is merged into happiness as in the paper.
IEMOCAP_LABELS: dict[str, str] = {"ang": "anger", "hap": "happiness", "exc": "happiness", "neu": "neutral",
                                  "sad": "sadness"}
_IEMOCAP_LINE = re.compile(r"^\[(?P<start>[\d.]+) - (?P<end>[\d.]+)\]\t(?P<utt>\S+)\t(?P<code>\w+)\t\[")
_UTTERANCE_ID = re.compile(r"^(?P<session>Ses\d\d)(?P<lead>[FM])_(?P<script>.+)_(?P<gender>[FM])\d+$")


class CorpusError(UserError, ValueError):
    """A corpus that cannot be used as it is; the message lists every problem found and how to proceed."""


# ----------------------------------------------------------------------------------------------------------------
# IEMOCAP


def read_iemocap(root: str | Path, *, label_map: Mapping[str, str] = IEMOCAP_LABELS,
                 classes: Sequence[str] = EMOTIONS) -> pd.DataFrame:
    """The IEMOCAP release (`IEMOCAP_full_release/`) as a corpus table.

    Labels come from `Session*/dialog/EmoEvaluation/*.txt` (the per-utterance summary lines), audio paths from
    `Session*/sentences/wav/<dialog>/<utterance>.wav`. Codes outside `label_map` (frustration, surprise, `xxx`, ...)
    are left out, as in the paper's four-class setting, and counted per code in `attrs["dropped_labels"]`; pass
    another `label_map` to keep them. The speaker is the
    session plus the gender letter of the utterance's last name token (`Ses01F_impro01_M000` -> `Ses01M`); `dialog`
    is the dialog prefix (`Ses01F`), the unit the official code's folds are made of. `duration` is the labelled
    turn length; `validate_corpus` measures the audio itself.
    """
    root = Path(root).expanduser()
    sessions = sorted(p for p in root.glob("Session*") if p.is_dir())
    if not sessions:
        raise CorpusError(f"{root} holds no Session1..Session5 folders: give the IEMOCAP_full_release folder itself")
    unknown_targets = sorted(set(label_map.values()) - set(classes))
    if unknown_targets:
        raise CorpusError(f"label_map maps to {unknown_targets}, which are not among classes={list(classes)}")
    rows, dropped = [], {}
    for session in sessions:
        label_files = sorted((session / "dialog" / "EmoEvaluation").glob("*.txt"))
        if not label_files:
            raise CorpusError(f"{session / 'dialog' / 'EmoEvaluation'} holds no label files (*.txt)")
        for label_file in label_files:
            for line_no, line in enumerate(label_file.read_text(errors="replace").splitlines(), 1):
                if not line.startswith("["):
                    continue
                match = _IEMOCAP_LINE.match(line)
                if match is None:
                    raise CorpusError(f"{label_file}:{line_no}: unreadable summary line {line!r}")
                code = match["code"]
                if code not in label_map:
                    dropped[code] = dropped.get(code, 0) + 1
                    continue
                utt = match["utt"]
                parts = _UTTERANCE_ID.match(utt)
                if parts is None:
                    raise CorpusError(f"{label_file}:{line_no}: utterance id {utt!r} is not of the form "
                                      "Ses01F_impro01_M000")
                dialog_name = utt.rsplit("_", 1)[0]
                rows.append(dict(
                    utterance=utt,
                    path=str(session / "sentences" / "wav" / dialog_name / f"{utt}.wav"),
                    label=label_map[code],
                    speaker=f"{parts['session']}{parts['gender']}",
                    session=parts["session"],
                    dialog=f"{parts['session']}{parts['lead']}",
                    duration=float(match["end"]) - float(match["start"]),
                ))
    table = corpus_table(rows, source=str(root))
    table.attrs["dropped_labels"] = dropped
    return table


# ----------------------------------------------------------------------------------------------------------------
# Any corpus from a CSV manifest


def read_manifest(manifest: str | Path, *, label_map: Mapping[str, str] | None = None,
                  classes: Sequence[str] = EMOTIONS) -> pd.DataFrame:
    """A corpus from a CSV with columns `path,label,speaker` (required) and `session`, `dialog` (optional).

    Paths are relative to the manifest's folder (absolute paths are kept). `label_map` maps raw labels to class
    names (default: labels must already be class names); rows whose label is not mapped are dropped and counted in
    `table.attrs["dropped_labels"]`. A missing `session` defaults to the speaker; a missing `dialog` to the session.
    """
    manifest = Path(manifest).expanduser()
    header, records = manifest_records(manifest)
    missing = [c for c in ("path", "label", "speaker") if c not in header]
    if missing:
        raise CorpusError(f"{manifest}: header {header} lacks required column(s) {missing}; "
                          "the manifest needs at least path,label,speaker")
    empty = [f"line {line}, column {column!r}" for line, rec in records for column in ("path", "label", "speaker")
             if not (rec.get(column) or "").strip()]
    if empty:
        shown = "; ".join(empty[:10]) + (f"; and {len(empty) - 10} more" if len(empty) > 10 else "")
        raise CorpusError(f"{manifest}: {len(empty)} empty required cell(s): {shown}. Fill them in, or delete "
                          "those rows")
    mapping = dict(label_map) if label_map is not None else {c: c for c in classes}
    unknown_targets = sorted(set(mapping.values()) - set(classes))
    if unknown_targets:
        raise CorpusError(f"label_map maps to {unknown_targets}, which are not among classes={list(classes)}")
    rows, dropped = [], {}
    for i, rec in records:
        raw = (rec.get("label") or "").strip()
        if raw not in mapping:
            dropped[raw] = dropped.get(raw, 0) + 1
            continue
        path = Path(rec["path"].strip())
        path = path if path.is_absolute() else manifest.parent / path
        speaker = (rec.get("speaker") or "").strip()
        session = (rec.get("session") or "").strip() or speaker
        rows.append(dict(utterance=f"{manifest.stem}:{i}:{path.stem}", path=str(path), label=mapping[raw],
                         speaker=speaker, session=session, dialog=(rec.get("dialog") or "").strip() or session,
                         duration=np.nan))
    table = corpus_table(rows, source=str(manifest))
    table.attrs["dropped_labels"] = dropped
    return table


def manifest_records(manifest: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """A CSV manifest's header and its rows as (line number, {column: cell}), read as UTF-8 with or without a
    byte-order mark (as spreadsheet programs save "CSV UTF-8"). A missing file or one that is not UTF-8 is a
    CorpusError naming the file, the first bad byte's offset and line, and the fix."""
    if not manifest.is_file():
        raise CorpusError(f"manifest {manifest} does not exist")
    data = manifest.read_bytes()
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = bom + err.start
        line = data[:offset].count(b"\n") + 1
        raise CorpusError(f"{manifest}: byte {offset} (line {line}) is {data[offset:offset + 1]!r}, not UTF-8 text; "
                          "save the manifest as UTF-8 (in a spreadsheet program: CSV UTF-8; or "
                          f"iconv -f latin1 -t utf-8), then read it again") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or []]
    reader.fieldnames = header
    records = []
    for rec in reader:
        records.append((reader.line_num, rec))  # the line the row ends on (a quoted cell may span lines)
    return header, records


def corpus_table(rows: list[dict], *, source: str) -> pd.DataFrame:
    """Rows (dicts with the `CORPUS_COLUMNS` keys) as a corpus table sorted by utterance id; `attrs["source"]` is
    `source`. Every reader ends here, so an empty corpus or a repeated utterance id is refused the same way."""
    table = pd.DataFrame(rows, columns=list(CORPUS_COLUMNS))
    if table.empty:
        raise CorpusError(f"{source}: no utterance with a usable label was found")
    duplicated = table["utterance"][table["utterance"].duplicated()].tolist()
    if duplicated:
        raise CorpusError(f"{source}: utterance ids appear twice: {duplicated[:5]}")
    table.attrs["source"] = source
    return table.sort_values("utterance", kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------------------------
# Audio


def load_audio(path: str | Path, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Samples of an audio file as float32 mono at `sample_rate`, shape (n,): channels averaged, resampled."""
    wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if rate != sample_rate:
        g = np.gcd(int(rate), int(sample_rate))
        wave = resample_poly(wave, sample_rate // g, int(rate) // g).astype(np.float32)
    return wave


# ----------------------------------------------------------------------------------------------------------------
# Validation


@dataclass(frozen=True)
class Problem:
    """One unusable utterance: where it is (its id names the manifest line for a manifest) and why."""

    utterance: str
    path: str
    reason: str


@dataclass
class ValidationReport:
    """Everything one pass over a corpus found; `skipped` counts utterances left out under `on_bad="skip"`."""

    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    downmixed: int = 0
    resampled: int = 0
    skipped: int = 0

    def summary(self) -> str:
        lines = [f"{self.checked} utterances checked: {len(self.problems)} unusable, {self.downmixed} to downmix "
                 f"(multi-channel), {self.resampled} to resample (not {SAMPLE_RATE} Hz), {self.skipped} skipped"]
        lines += [f"  {p.path} (row {p.utterance}): {p.reason}" for p in self.problems]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return dict(checked=self.checked, unusable=len(self.problems), downmixed=self.downmixed,
                    resampled=self.resampled, skipped=self.skipped,
                    problems=[p.__dict__ for p in self.problems])


def _audio_reasons(facts: dict, *, min_seconds: float) -> list[str]:
    """Why a file with these facts (`audio_facts`) cannot be used: unreadable, empty, too short, truncated,
    non-finite samples, silence; [] for a usable one."""
    if "error" in facts:
        return [facts["error"]]
    if facts["frames"] == 0:
        return ["empty audio (0 samples)"]
    seconds = facts["frames"] / facts["samplerate"]
    reasons = [f"too short ({seconds:.3f} s < min_seconds={min_seconds})"] if seconds < min_seconds else []
    if facts["truncated"]:
        reasons.append(facts["truncated"])
    if facts["nonfinite"]:
        reasons.append(f"{facts['nonfinite']} non-finite samples (NaN or Inf): its features would be NaN")
    elif peak_dbfs(facts["peak"]) < SILENCE_DBFS:
        reasons.append(f"silent (peak {peak_dbfs(facts['peak']):.0f} dBFS, below {SILENCE_DBFS:.0f} dBFS)")
    return reasons


def _duplicate_reasons(table: pd.DataFrame, hashes: list[str | None]) -> dict[int, str]:
    """{row position: reason} for rows whose audio another row lists too: the same path, or the same content (hash)
    under another path. One clip listed twice could land in train and test. Where every copy has the same label
    and speaker, the first stays usable and the later copies are the problems; where they disagree, every copy is
    (which label is right cannot be told)."""
    groups: dict[str, list[int]] = {}
    for i, digest in enumerate(hashes):
        if digest is not None:
            groups.setdefault(digest, []).append(i)
    reasons = {}
    for rows in (r for r in groups.values() if len(r) > 1):
        part = table.iloc[rows]
        pairs = sorted(set(part["label"].astype(str) + "/" + part["speaker"].astype(str)))
        agree = len(pairs) == 1
        for i in rows[1:] if agree else rows:
            others = [j for j in rows if j != i]
            here = Path(table["path"].iloc[i]).absolute()
            same_file = all(Path(table["path"].iloc[j]).absolute() == here for j in others)
            names = ", ".join(f"{table['path'].iloc[j]} (row {table['utterance'].iloc[j]})" for j in others)
            what = "the same file is also listed as" if same_file else "the same audio (content) as"
            disagree = "" if agree else f"; the copies disagree on label/speaker ({', '.join(pairs)})"
            reasons[i] = f"duplicate: {what} {names}{disagree}"
    return reasons


def validate_corpus(table: pd.DataFrame, *, classes: Sequence[str] = EMOTIONS, min_seconds: float = 0.25,
                    on_bad: Literal["error", "skip"] = "error",
                    cache_dir: str | Path | None = None) -> tuple[pd.DataFrame, ValidationReport]:
    """Check every utterance, reading every sample once, and report all problems together, each with its file and
    row (the utterance id; for a manifest it holds the line number).

    Problems: missing file, unreadable or not audio, empty or shorter than `min_seconds`, a WAV holding less data
    than its header says (truncated), NaN or Inf samples, silence (peak below `SILENCE_DBFS`), the same file or the
    same content listed twice, label not in `classes`, missing speaker. Multi-channel and non-16 kHz files are fine
    (downmixed/resampled on load) and counted. `on_bad="error"` raises `CorpusError` with the whole report;
    `on_bad="skip"` returns the table without the bad rows and the report says how many were skipped. `duration`
    is replaced by the measured length, and a `sha256` column holds each file's content hash (the per-file facts
    are cached under `<cache>/audio-checks/`, so a rerun reads only files that changed).
    """
    if on_bad not in ("error", "skip"):
        raise ValueError(f"on_bad={on_bad!r}; choose 'error' (stop with the report) or 'skip' (leave them out)")
    missing_columns = [c for c in ("utterance", "path", "label", "speaker") if c not in table.columns]
    if missing_columns:
        raise CorpusError(f"corpus table lacks column(s) {missing_columns}")
    report = ValidationReport(checked=len(table))
    facts = audio_facts(table["path"], cache_dir=cache_dir)
    durations = np.full(len(table), np.nan)
    hashes: list[str | None] = [None] * len(table)
    all_reasons: list[list[str]] = []
    for i, row in enumerate(table.itertuples(index=False)):
        reasons = []
        if row.label not in classes:
            reasons.append(f"unknown label {row.label!r} (classes: {list(classes)})")
        if not isinstance(row.speaker, str) or not row.speaker.strip():
            reasons.append("missing speaker")
        found = facts.get(str(row.path))
        if found is None:
            reasons.append("missing file")
        else:
            hashes[i] = found["sha256"]
            audio = _audio_reasons(found, min_seconds=min_seconds)
            reasons += audio
            if "frames" in found and found["samplerate"]:
                durations[i] = found["frames"] / found["samplerate"]
            if not audio:
                report.downmixed += found["channels"] > 1
                report.resampled += found["samplerate"] != SAMPLE_RATE
        all_reasons.append(reasons)
    usable = [digest if not reasons else None for digest, reasons in zip(hashes, all_reasons)]
    for i, reason in _duplicate_reasons(table, usable).items():  # copies among rows otherwise usable
        all_reasons[i].append(reason)
    bad = np.array([bool(r) for r in all_reasons], dtype=bool)
    report.problems = [Problem(str(row.utterance), str(row.path), "; ".join(reasons))
                       for row, reasons in zip(table.itertuples(index=False), all_reasons) if reasons]
    checked = table.copy()
    checked["duration"] = durations
    checked["sha256"] = hashes
    if bad.any() and on_bad == "error":
        raise CorpusError(report.summary() + "\nFix these files, or pass on_bad='skip' to leave them out "
                          "(the count is recorded with the results).")
    report.skipped = int(bad.sum())
    checked = checked[~bad].reset_index(drop=True)
    checked.attrs = {**table.attrs, "validation": report.as_dict()}
    return checked, report


def class_speaker_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Utterances per speaker (rows) and class (columns), with totals: what the data chapter prints. Columns follow
    the run's class order (`attrs["classes"]`, as `load_corpus` sets it) where the table has one."""
    counts = pd.crosstab(table["speaker"], table["label"], margins=True, margins_name="total")
    order = [c for c in table.attrs.get("classes") or () if c in counts.columns]
    rest = [c for c in counts.columns if c not in order and c != "total"]
    return counts[order + rest + ["total"]]


def left_out_table(table: pd.DataFrame) -> pd.DataFrame:
    """Everything a reader and the validation left out of (or flagged in) `table`, from its `attrs`: one row per
    reason with `what`, `count`, `left_out` (False for what was flagged but kept) and `detail` (an example, or the
    labels); empty when nothing was left out or flagged.

    Reasons: labels not mapped to a class (`dropped_labels`), file names breaking the corpus's convention
    (`malformed`), clips outside those the corpus defines (`skipped`), non-audio files (`ignored_files`), repeated
    ids (`duplicates`), names that disagree with their folder (`mismatched`, kept), unusable audio left out under
    on_bad="skip" (`validation`), and classes without any clip under classes="all" (`classes_without_clips`).
    """
    attrs = table.attrs
    rows = [dict(what=f"label {label!r} not mapped to a class (dropped)", count=int(n), left_out=True, detail="")
            for label, n in sorted((attrs.get("dropped_labels") or {}).items())]
    for key, what in (("malformed", "file name breaks the corpus's convention (left out)"),
                      ("duplicates", "repeated utterance id (the second copy left out)"),
                      ("mismatched", "name disagrees with its folder (kept, as the detail says)")):
        found = attrs.get(key) or []
        if found:
            path, reason = found[0]
            rows.append(dict(what=what, count=len(found), left_out=key != "mismatched",
                             detail=f"e.g. {Path(path).name}: {reason}"))
    rows += [dict(what=f"skipped: {reason}", count=int(n), left_out=True, detail="")
             for reason, n in sorted((attrs.get("skipped") or {}).items())]
    if attrs.get("ignored_files"):
        rows.append(dict(what="not a .wav file (ignored)", count=int(attrs["ignored_files"]), left_out=True,
                         detail=""))
    validation = attrs.get("validation") or {}
    if validation.get("skipped"):
        first = (validation.get("problems") or [{}])[0]
        example = f"e.g. {Path(str(first.get('path', ''))).name}: {first.get('reason', '')}"
        rows.append(dict(what="unusable audio (left out, on_bad='skip')", count=int(validation["skipped"]),
                         left_out=True, detail=example))
    empty = attrs.get("classes_without_clips") or []
    if empty:
        rows.append(dict(what="class without any clip (left out of classes='all')", count=len(empty),
                         left_out=True, detail=", ".join(empty)))
    return pd.DataFrame(rows, columns=["what", "count", "left_out", "detail"])


def sample_per_class(table: pd.DataFrame, n: int, *, seed: int = 0) -> pd.DataFrame:
    """At most `n` rows of each class, drawn without replacement (all of a class with fewer), in table order."""
    if n < 1:
        raise ValueError(f"sample_per_class: n={n} must be at least 1")
    keep = table.groupby("label", group_keys=False).apply(
        lambda part: part.sample(min(len(part), n), random_state=seed)).index
    return table.loc[sorted(keep)]


def example_clips(table: pd.DataFrame, classes: Sequence[str], *, speaker: str | None = None) -> dict[str, pd.Series]:
    """One row per class from one speaker (`speaker`, else the first in sort order), saying the same sentence in
    every class where the table records sentences (`text`) and one sentence covers them all."""
    speaker = speaker if speaker is not None else sorted(table["speaker"].unique())[0]
    own = table[table["speaker"] == speaker]
    if "text" in own:
        coverage = own.groupby("text")["label"].nunique()
        if len(coverage) and coverage.max() == len(set(classes) & set(own["label"])):
            own = own[own["text"] == coverage.idxmax()]
    return {c: own[own["label"] == c].iloc[0] for c in classes if (own["label"] == c).any()}
