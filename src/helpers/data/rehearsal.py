"""Corpora laid out like the public releases, made from the demo corpus's synthesis, to rehearse a profile without
the real data: the same folder layout, file names, sample rate and clip lengths, so the readers, the input-length
fit, the folds and every chapter meet the shapes and costs of the real corpus. The speech is synthetic (espeak-ng
voices whose prosody sets the emotion), so accuracies say nothing about the real corpus; times and sizes do.

`write_ravdess_like`: RAVDESS's audio-only speech release (`Actor_NN/03-01-EE-II-SS-RR-NN.wav`, 48 kHz, 16-bit,
clips of about 3.3-4.5 s with a second of near-silence around the sentence).

`write_iemocap_like`: IEMOCAP's release (`IEMOCAP_full_release/SessionN/dialog/EmoEvaluation/<dialog>.txt` label
files in the release's own format, `sentences/wav/<dialog>/<utterance>.wav` at 16 kHz, both actors in every dialog,
improvised and scripted dialogs led by either actor, codes such as `exc`, `fru`, `xxx` that the paper's four
classes drop or merge), with a few turns per dialog.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy.signal import resample_poly

from ..io import atomic_directory, atomic_write_text, cache_root
from ..labels import SAMPLE_RATE
from ..progress import progress
from .corpora import load_audio
from .demo_corpus import DemoCorpusSettings, load_demo_corpus

__all__ = ["iemocap_like_durations", "RAVDESS_CODES", "ravdess_name", "pad_to_seconds", "write_ravdess_like",
           "IEMOCAP_TURNS", "iemocap_label_text", "write_iemocap_like"]

# RAVDESS emotion codes of the classes the demo synthesis can make (02 calm and 08 surprised it cannot)
RAVDESS_CODES = {"neutral": "01", "happiness": "03", "sadness": "04", "anger": "05", "fear": "06", "disgust": "07"}
_RATE = 48000  # RAVDESS's sample rate


def iemocap_like_durations(n: int, seed: int = 0, *, median: float = 3.4, mean: float = 4.5) -> np.ndarray:
    """`n` clip lengths in seconds from a log-normal with this median and mean, clipped to 0.6-35 s: an assumed
    stand-in for IEMOCAP's four-class utterances (mean about 4.5 s, a tail past 30 s) where lengths set the cost."""
    sigma = np.sqrt(2 * np.log(mean / median))
    return np.clip(np.random.default_rng(seed).lognormal(np.log(median), sigma, n), 0.6, 35.0)


def ravdess_name(emotion: str, intensity: int, statement: int, repetition: int, actor: int) -> str:
    """The RAVDESS file name of an audio-only speech clip (modality 03, vocal channel 01)."""
    return f"03-01-{RAVDESS_CODES[emotion]}-{intensity:02d}-{statement:02d}-{repetition:02d}-{actor:02d}.wav"


def pad_to_seconds(wave: np.ndarray, seconds: float, lead_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """`wave` padded to `seconds` (never cut) with noise at the level of its quietest 10 ms, `lead_fraction` of the
    padding before it: recorded silence, not digital zeros."""
    n = int(round(seconds * SAMPLE_RATE))
    if wave.size >= n:
        return wave
    frames = wave[: wave.size // 160 * 160].reshape(-1, 160)
    floor = float(np.sqrt(np.min(np.mean(frames.astype(np.float64) ** 2, axis=1)))) if len(frames) else 1e-4
    pad = n - wave.size
    lead = int(pad * lead_fraction)
    noise = (rng.standard_normal(pad) * max(floor, 1e-5)).astype(np.float32)
    return np.concatenate([noise[:lead], wave, noise[lead:]])


def _clip_plan(table: pd.DataFrame, actor_offset: int) -> list[dict]:
    """RAVDESS names for a demo corpus's clips: per speaker and emotion, clip k has statement k%2+1, repetition
    k//2%2+1 and intensity k//4+1 (neutral: normal intensity only, as in RAVDESS, so its 4 first clips)."""
    speakers = sorted(table["speaker"].unique(), key=lambda s: (s[:-1], s[-1] == "F"))  # M, F alternate: odd male
    plan = []
    for i, speaker in enumerate(speakers):
        actor = actor_offset + i + 1
        for emotion, rows in table[table["speaker"] == speaker].groupby("label", sort=False):
            for k, row in enumerate(rows.sort_values("utterance").itertuples()):
                intensity = k // 4 + 1
                if intensity > 2 or (emotion == "neutral" and intensity > 1):
                    continue
                plan.append(dict(path=row.path, label=emotion, actor=actor,
                                 name=ravdess_name(emotion, intensity, k % 2 + 1, k // 2 % 2 + 1, actor)))
    return plan


def write_ravdess_like(out: str | Path | None = None, *, n_actors: int = 24, seed: int = 0,
                       cache_dir: str | Path | None = None) -> Path:
    """A RAVDESS-like speech release of `n_actors` actors (an even number up to 48) in `out` (default
    `<cache>/rehearsal/ravdess-like-<n_actors>-<seed>`), written once (atomically) and reused.

    Per actor, as RAVDESS: 4 neutral clips and 8 (2 intensities x 2 statements x 2 repetitions) of each of
    happiness, sadness, anger, fear and disgust (calm and surprised are not synthesised: 44 of RAVDESS's 60), so
    the paper's four classes have 28 clips per actor, 672 for 24 actors, as in RAVDESS. Actors come from demo
    corpora of 12 speakers each (seeds `seed`, `seed + 1`, ...): actors 13-24 reuse the voices of 1-12 with other
    pitch, rate and sentences. Odd actors are male, even female. Clips are padded with recorded-level noise to
    3.3-4.5 s (RAVDESS's range) and written at 48 kHz, 16-bit.
    """
    if n_actors < 2 or n_actors % 2 or n_actors > 48:
        raise ValueError(f"n_actors={n_actors}: an even number from 2 to 48 (12 per demo corpus, 4 corpora at most)")
    out = Path(out) if out is not None else cache_root(cache_dir) / "rehearsal" / f"ravdess-like-{n_actors}-{seed}"
    if (out / "rehearsal.json").is_file():
        return out
    plan: list[dict] = []
    for c in range(0, n_actors, 12):
        speakers = min(12, n_actors - c)
        table = load_demo_corpus(DemoCorpusSettings(seed=seed + c // 12, n_speakers=speakers,
                                                    clips_per_speaker_emotion=8,
                                                    emotions=tuple(RAVDESS_CODES)), cache_dir=cache_dir)
        plan += _clip_plan(table, actor_offset=c)
    rng = np.random.default_rng(seed)
    with atomic_directory(out) as tmp:
        for clip in progress(plan, desc="RAVDESS-like clips", unit="clip", leave=False):
            wave = pad_to_seconds(load_audio(clip["path"]), rng.uniform(3.3, 4.5), rng.uniform(0.3, 0.6), rng)
            folder = tmp / f"Actor_{clip['actor']:02d}"
            folder.mkdir(exist_ok=True)
            sf.write(folder / clip["name"], resample_poly(wave, _RATE // SAMPLE_RATE, 1).clip(-1, 1), _RATE,
                     subtype="PCM_16")
        atomic_write_text(tmp / "rehearsal.json", json.dumps(dict(
            layout="RAVDESS audio-only speech", n_actors=n_actors, seed=seed, n_clips=len(plan),
            note="synthetic speech (espeak-ng) in RAVDESS's layout, for timing and rehearsal only")))
    return out


# ----------------------------------------------------------------------------------------------------------------
# IEMOCAP

# Turn k of every dialog: (who speaks, the evaluators' code, the demo emotion whose synthesis it gets). Turns
# alternate between the dialog's leading actor (the letter after `SesNN`) and the other; the first 4 give each
# dialog the four classes and dialogs led by either actor give each actor all four; the later turns bring in what
# the paper's four classes merge (exc into happiness) and drop (xxx no agreement, fru, oth, sur).
IEMOCAP_TURNS: tuple[tuple[str, str, str], ...] = (
    ("lead", "neu", "neutral"), ("other", "sad", "sadness"), ("lead", "ang", "anger"), ("other", "hap", "happiness"),
    ("lead", "xxx", "neutral"), ("other", "exc", "happiness"), ("lead", "sad", "sadness"), ("other", "fru", "anger"),
    ("lead", "hap", "happiness"), ("other", "neu", "neutral"), ("lead", "oth", "sadness"), ("other", "ang", "anger"),
    ("lead", "exc", "happiness"), ("other", "sur", "happiness"),
)
_IEMOCAP_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"
_EVALUATOR_WORDS = {"neu": "Neutral", "sad": "Sadness", "ang": "Anger", "hap": "Happiness", "exc": "Excited",
                    "fru": "Frustration", "sur": "Surprise", "oth": "Other", "xxx": "Neutral; Frustration"}


def iemocap_label_text(turns: list[dict]) -> str:
    """An EmoEvaluation file in the release's format: the header, then per turn a summary line
    `[start - end]<TAB>utterance<TAB>code<TAB>[v, a, d]` and its evaluators' lines (C-E*, C-F*, A-E*, A-F*)."""
    lines = [_IEMOCAP_HEADER, ""]
    for t in turns:
        words = _EVALUATOR_WORDS[t["code"]]
        lines += [f"[{t['start']:.4f} - {t['end']:.4f}]\t{t['utterance']}\t{t['code']}\t"
                  f"[{t['v']:.4f}, {t['a']:.4f}, {t['d']:.4f}]",
                  f"C-E1:\t{words};\t()", f"C-E2:\t{words};\t()", f"C-F1:\t{words.split(';')[0]};\t(voice)",
                  f"A-E1:\tval {round(t['v'])}; act {round(t['a'])}; dom  {round(t['d'])};\t()",
                  f"A-F1:\tval {round(t['v'])}; act {round(t['a'])}; dom  {round(t['d'])};\t()", ""]
    return "\n".join(lines) + "\n"


def _iemocap_plan(table: pd.DataFrame, *, dialogs: tuple[str, ...], clips_per_dialog: int,
                  rng: np.random.Generator) -> list[dict]:
    """Every turn of the release: session, dialog, utterance id, code, length asked for, pause before it, and the
    demo clip it reuses (a speaker's clips of an emotion are used in turn, so no clip repeats while the corpus has
    enough). Start and end times are set once the audio's length is known (a clip is never cut)."""
    clips = {key: sorted(rows["path"]) for key, rows in table.groupby(["speaker", "label"])}
    used: dict[tuple[str, str], int] = {}
    plan = []
    for s in range(1, 6):
        for lead in ("F", "M"):
            for kind in dialogs:
                dialog = f"Ses{s:02d}{lead}_{kind}"
                said = {"F": 0, "M": 0}
                for role, code, emotion in IEMOCAP_TURNS[:clips_per_dialog]:
                    gender = lead if role == "lead" else "MF"[lead == "M"]
                    key = (f"S{s:02d}{gender}", emotion)
                    path = clips[key][used.get(key, 0) % len(clips[key])]
                    used[key] = used.get(key, 0) + 1
                    seconds = float(rng.uniform(1.5, 9.0))
                    plan.append(dict(session=s, dialog=dialog, code=code, source=path, seconds=seconds,
                                     utterance=f"{dialog}_{gender}{said[gender]:03d}",
                                     pause=float(rng.uniform(0.2, 2.0) if plan and plan[-1]["dialog"] == dialog
                                                 else rng.uniform(2, 8)),
                                     v=float(rng.uniform(1, 5)), a=float(rng.uniform(1, 5)),
                                     d=float(rng.uniform(1, 5))))
                    said[gender] += 1
    return plan


def write_iemocap_like(out: str | Path | None = None, *, clips_per_dialog: int = 8,
                       dialogs: tuple[str, ...] = ("impro01", "script01_1"), seed: int = 0,
                       cache_dir: str | Path | None = None) -> Path:
    """An IEMOCAP-like release in `out` (default `<cache>/rehearsal/iemocap-like-<clips_per_dialog>-<seed>`),
    written once (atomically) and reused: what `read_iemocap` (`data=iemocap:<out>`) reads as IEMOCAP.

    Five sessions, each with two actors (demo speakers `S0nF`, `S0nM` of a 10-speaker demo corpus) and, per
    leading actor, one dialog of each kind in `dialogs` (improvised `impro01`, scripted `script01_1`, whose name
    has the release's extra underscore): `Ses01F_impro01`, `Ses01F_script01_1`, `Ses01M_impro01`, ... Dialog turns
    follow `IEMOCAP_TURNS[:clips_per_dialog]` (1..14), alternating the two actors (`_F000`, `_M000`, `_F001`, ...):
    with 4 or more, each dialog holds the four classes. Each turn is a demo clip of its code's emotion, padded with
    recorded-level noise to 1.5-9 s, written at 16 kHz, 16-bit. Beside the summary files lie the release's
    `Categorical/`, `Attribute/` and `Self-evaluation/` folders (per-evaluator files the reader must skip), and
    `dialog/transcriptions/`.
    """
    if not 1 <= clips_per_dialog <= len(IEMOCAP_TURNS):
        raise ValueError(f"clips_per_dialog={clips_per_dialog}: from 1 to {len(IEMOCAP_TURNS)} turns per dialog "
                         "(4 or more give every dialog the four classes)")
    if not dialogs or len(set(dialogs)) != len(dialogs):
        raise ValueError(f"dialogs={dialogs!r}: give distinct dialog kinds such as ('impro01', 'script01_1')")
    out = (Path(out) if out is not None else
           cache_root(cache_dir) / "rehearsal" / f"iemocap-like-{clips_per_dialog}-{'-'.join(dialogs)}-{seed}")
    if (out / "rehearsal.json").is_file():
        return out
    per_speaker = -(-len(dialogs) * 2 * clips_per_dialog // 2)  # turns of one actor in a session, at most
    table = load_demo_corpus(DemoCorpusSettings(seed=seed, n_speakers=10,
                                                clips_per_speaker_emotion=max(1, min(per_speaker, 8))),
                             cache_dir=cache_dir)
    rng = np.random.default_rng(seed)
    plan = _iemocap_plan(table, dialogs=dialogs, clips_per_dialog=clips_per_dialog, rng=rng)
    with atomic_directory(out) as tmp:
        for turn in progress(plan, desc="IEMOCAP-like turns", unit="clip", leave=False):
            folder = tmp / f"Session{turn['session']}" / "sentences" / "wav" / turn["dialog"]
            folder.mkdir(parents=True, exist_ok=True)
            wave = pad_to_seconds(load_audio(turn["source"]), turn["seconds"], rng.uniform(0.2, 0.6), rng)
            sf.write(folder / f"{turn['utterance']}.wav", wave.clip(-1, 1), SAMPLE_RATE, subtype="PCM_16")
            turn["seconds"] = wave.size / SAMPLE_RATE
        clock = 0.0
        for i, turn in enumerate(plan):  # label times from the written lengths, one dialog's clock at a time
            clock = (clock if i and plan[i - 1]["dialog"] == turn["dialog"] else 0.0) + turn["pause"]
            turn["start"], turn["end"] = clock, clock + turn["seconds"]
            clock = turn["end"]
        for (session, dialog), turns in pd.DataFrame(plan).groupby(["session", "dialog"]):
            turns = turns.to_dict("records")
            base = tmp / f"Session{session}" / "dialog"
            labels = base / "EmoEvaluation"
            for sub in ("Categorical", "Attribute", "Self-evaluation"):
                (labels / sub).mkdir(parents=True, exist_ok=True)
            atomic_write_text(labels / f"{dialog}.txt", iemocap_label_text(turns))
            atomic_write_text(labels / "Categorical" / f"{dialog}_e1_cat.txt", "".join(
                f"{t['utterance']} :{_EVALUATOR_WORDS[t['code']].split(';')[0]}; ()\n" for t in turns))
            atomic_write_text(labels / "Attribute" / f"{dialog}_e1_atr.txt", "".join(
                f"{t['utterance']} :act {round(t['a'])}; val {round(t['v'])}; dom {round(t['d'])}; ()\n"
                for t in turns))
            atomic_write_text(labels / "Self-evaluation" / f"{dialog}.txt", f"{dialog} self-evaluation\n")
            (base / "transcriptions").mkdir(exist_ok=True)
            atomic_write_text(base / "transcriptions" / f"{dialog}.txt", "".join(
                f"{t['utterance']} [{t['start']:.4f}-{t['end']:.4f}]: (synthetic sentence)\n" for t in turns))
        atomic_write_text(tmp / "rehearsal.json", json.dumps(dict(
            layout="IEMOCAP_full_release", clips_per_dialog=clips_per_dialog, dialogs=list(dialogs), seed=seed,
            n_clips=len(plan),
            note="synthetic speech (espeak-ng) in IEMOCAP's layout, for timing and rehearsal only")))
    return out
