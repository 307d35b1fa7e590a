"""Cross-validation protocols: which utterances train, select the checkpoint (validation) and test in each fold.

- ``speaker``: leave one speaker out; validation is another speaker, of the test speaker's session when it has one
  (on IEMOCAP: the other actor of the test session). 10 folds on IEMOCAP.
- ``session``: leave one session out; validation is one speaker of another session. 5 folds on IEMOCAP
  (comparable with EmoBox/SUPERB).
- ``dialog``: the official code's folds by dialog prefix (`Ses01F`, ...). A prefix holds both actors' turns, so
  test speakers also appear in training, and the checkpoint is chosen on the test fold as the official code did.
  It exists only to replicate the published numbers and to measure how much they owe to that leak.
- ``speakers-k``: k-fold over speakers, for corpora without sessions (RAVDESS: 24 actors), where one fold per speaker
  costs too much. The sorted speakers are dealt round-robin into `k` groups, females first then males (gender from
  ``table.attrs["speaker_gender"]`` where a reader gives it; unknown genders are dealt last, in sorted order), so
  group sizes differ by at most 1 and each group's gender mix is as even as possible. Fold ``speakers-k{k}-g{i}``
  (i = 1..k) tests group i; `n_validation` speakers of the next group (cycling) select the checkpoint, alternating
  female and male (fold 1 starts with a female); every other speaker trains. Each group validates exactly one
  fold, so different speakers validate in different folds. No randomness.
"""

from __future__ import annotations

import json
import operator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from ..errors import ConfigError
from ..io import atomic_write_text, read_json_checked

__all__ = ["PROTOCOLS", "Protocol", "Fold", "make_folds", "fold_table", "fold_tables", "save_folds", "load_folds"]

Protocol = Literal["speaker", "session", "dialog", "speakers-k"]
PROTOCOLS: tuple[str, ...] = ("speaker", "session", "dialog", "speakers-k")


@dataclass(frozen=True)
class Fold:
    """One fold: utterance ids per split, the held-out group(s) and whether selection uses the test split."""

    name: str
    protocol: str
    test_groups: tuple[str, ...]
    validation_speakers: tuple[str, ...]
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]
    selection_on_test: bool = False

    def speakers(self, table: pd.DataFrame, split: str) -> set[str]:
        ids = set(getattr(self, split))
        return set(table.loc[table["utterance"].isin(ids), "speaker"])


def _ids(table: pd.DataFrame, mask) -> tuple[str, ...]:
    return tuple(sorted(table.loc[mask, "utterance"]))


def _validation_speaker_for_speaker(table: pd.DataFrame, test_speaker: str, speakers: list[str]) -> str:
    session = table.loc[table["speaker"] == test_speaker, "session"].iloc[0]
    same_session = sorted(set(table.loc[table["session"] == session, "speaker"]) - {test_speaker})
    if same_session:
        return same_session[0]
    return speakers[(speakers.index(test_speaker) + 1) % len(speakers)]  # next speaker in sorted order


def _gender(value) -> str:
    """'F', 'M' or '' (unknown) from a reader's gender value ('F', 'female', 'M', 'male', ...)."""
    letter = str(value).strip()[:1].upper() if isinstance(value, str) else ""
    return letter if letter in ("F", "M") else ""


def _interleave(lists: list[list[str]]) -> list[str]:
    """Round-robin over the lists: first of each, then second of each, ... (empty lists skipped)."""
    out = []
    for i in range(max((len(x) for x in lists), default=0)):
        out.extend(x[i] for x in lists if i < len(x))
    return out


def _as_int(value, name: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise ConfigError(f"protocol 'speakers-k' needs an integer {name}; got {name}={value!r}") from None


def _speakers_k_folds(table: pd.DataFrame, speakers: list, k: int, n_validation: int) -> list[Fold]:
    k, n_validation = _as_int(k, "k"), _as_int(n_validation, "n_validation")
    n = len(speakers)
    if k < 2:
        raise ConfigError(f"protocol 'speakers-k' needs k >= 2 groups; got k={k}: set k to 2 or more")
    if k > n:
        raise ConfigError(f"protocol 'speakers-k' got k={k} but the corpus has only {n} speakers: lower k to at most "
                          f"{n} (or use protocol 'speaker' for one fold per speaker)")
    if n_validation < 1:
        raise ConfigError(f"protocol 'speakers-k' needs n_validation >= 1 validation speaker; got "
                          f"n_validation={n_validation}: set n_validation to 1 or more")
    smallest, largest = n // k, -(-n // k)
    if n_validation > smallest:
        raise ConfigError(f"protocol 'speakers-k' takes n_validation={n_validation} validation speakers from the next "
                          f"group, but with {n} speakers and k={k} the smallest group has {smallest}: lower "
                          f"n_validation to at most {smallest} or lower k (larger groups)")
    if n - largest - n_validation < 1:
        raise ConfigError(f"protocol 'speakers-k' leaves {n - largest - n_validation} training speakers: {n} speakers "
                          f"- {largest} tested (k={k}) - {n_validation} validating (n_validation={n_validation}); "
                          "lower n_validation or raise k (smaller test groups), or use a corpus with more speakers")
    given = table.attrs.get("speaker_gender") or {}
    gender = {s: _gender(given.get(s)) for s in speakers}
    by_gender = {g: [s for s in speakers if gender[s] == g] for g in ("F", "M", "")}
    order = by_gender["F"] + by_gender["M"] + by_gender[""]  # dealt round-robin: sizes and gender mix stay even
    groups = [sorted(order[i::k]) for i in range(k)]
    folds = []
    for i, test in enumerate(groups):
        pool = groups[(i + 1) % k]
        first, second = ("F", "M") if i % 2 == 0 else ("M", "F")  # alternate which gender leads over the folds
        ranked = _interleave([[s for s in pool if gender[s] == g] for g in (first, second, "")])
        val = tuple(sorted(ranked[:n_validation]))
        held = list(test) + list(val)
        folds.append(Fold(f"speakers-k{k}-g{i + 1}", "speakers-k", tuple(test), val,
                          _ids(table, ~table["speaker"].isin(held)), _ids(table, table["speaker"].isin(val)),
                          _ids(table, table["speaker"].isin(test))))
    return folds


def make_folds(table: pd.DataFrame, protocol: Protocol, *, k: int = 5, n_validation: int = 2) -> list[Fold]:
    """The folds of `protocol` over a corpus table, deterministic (sorted groups, no randomness).

    `k` (groups, so folds) and `n_validation` (validation speakers per fold) apply to ``speakers-k`` only; the other
    protocols ignore them.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol={protocol!r}; choose one of {PROTOCOLS}")
    speakers = sorted(table["speaker"].unique())
    if protocol == "speakers-k":
        return _speakers_k_folds(table, speakers, k, n_validation)
    folds = []
    if protocol == "speaker":
        if len(speakers) < 3:
            raise ConfigError("protocol 'speaker' needs at least 3 speakers (train, validation, test); found "
                              f"{speakers}")
        for test in speakers:
            val = _validation_speaker_for_speaker(table, test, speakers)
            folds.append(Fold(f"speaker-{test}", protocol, (test,), (val,),
                              _ids(table, ~table["speaker"].isin([test, val])),
                              _ids(table, table["speaker"] == val), _ids(table, table["speaker"] == test)))
    elif protocol == "session":
        sessions = sorted(table["session"].unique())
        if len(sessions) < 2:
            raise ConfigError(f"protocol 'session' needs at least 2 sessions; found {sessions}")
        for i, test in enumerate(sessions):
            other = sessions[(i + 1) % len(sessions)]
            candidates = sorted(table.loc[table["session"] == other, "speaker"].unique())
            val = candidates[i % len(candidates)]  # alternate which speaker of the next session validates
            train_mask = (table["session"] != test) & (table["speaker"] != val)
            if not train_mask.any():
                raise ConfigError("protocol 'session' left no training data: the corpus needs more sessions or "
                                  "speakers")
            folds.append(Fold(f"session-{test}", protocol, (test,), (val,), _ids(table, train_mask),
                              _ids(table, table["speaker"] == val), _ids(table, table["session"] == test)))
    else:
        for test in sorted(table["dialog"].unique()):
            test_ids = _ids(table, table["dialog"] == test)
            folds.append(Fold(f"dialog-{test}", protocol, (test,), (), _ids(table, table["dialog"] != test),
                              test_ids, test_ids, selection_on_test=True))
    return folds


def fold_table(folds: list[Fold], table: pd.DataFrame) -> pd.DataFrame:
    """One row per fold: held-out group, validation speaker(s), split sizes and how many test speakers leak."""
    rows = []
    for f in folds:
        test_speakers = f.speakers(table, "test")
        rows.append(dict(fold=f.name, test=", ".join(f.test_groups),
                         validation=", ".join(f.validation_speakers) or "(the test fold)",
                         n_train=len(f.train), n_validation=len(f.validation), n_test=len(f.test),
                         test_speakers_in_train=len(test_speakers & f.speakers(table, "train"))))
    return pd.DataFrame(rows)


def fold_tables(table: pd.DataFrame, protocols, *, k: int = 5, n_validation: int = 2) -> pd.DataFrame:
    """`fold_table` of each of `protocols` (with a `protocol` column), one after the other. A protocol that cannot
    split this corpus (too few speakers or sessions) gets one row whose `test` column says why, instead of being
    left out or stopping the others."""
    parts = []
    for protocol in dict.fromkeys(protocols):
        try:
            part = fold_table(make_folds(table, protocol, k=k, n_validation=n_validation), table)
        except ValueError as err:
            part = pd.DataFrame([dict(fold="(no folds)", test=f"not possible on this corpus: {err}")])
        parts.append(part.assign(protocol=protocol))
    return pd.concat(parts, ignore_index=True)


def save_folds(folds: list[Fold], path: str | Path) -> Path:
    """Write folds as JSON (saved beside the results, so a run's exact splits are on record)."""
    path = Path(path)
    atomic_write_text(path, json.dumps([asdict(f) for f in folds], indent=1))  # concurrent runs read it
    return path


def load_folds(path: str | Path) -> list[Fold]:
    data = read_json_checked(path)
    return [Fold(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}) for d in data]
