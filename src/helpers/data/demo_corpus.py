"""A synthetic emotional-speech corpus made on the spot with espeak-ng: robot voices, not human emotion.

Each synthetic speaker is an espeak-ng voice variant with its own base pitch and speaking rate. The "emotions" (the
paper's four by default; fear and disgust as well when asked for, `DemoCorpusSettings.emotions`)
are prosody settings (pitch level, pitch range, rate, loudness) drawn per clip from per-emotion normal distributions
around the speaker's base, plus background noise at a random SNR: far enough apart that tiny.en learns the task in
a few CPU minutes, so that the analyses look inside a model that has specialised. Every emotion uses the same
sentences, so words carry no label information. Speakers come in pairs that share a `session`, and each session's
clips are split into two `dialog` groups that hold both speakers, mirroring IEMOCAP's structure (and the speaker
leak of the official dialog-prefix folds).
The numbers this corpus gives say nothing about how people express emotion.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from ..io import FileLock, atomic_directory, cache_root, file_sha256, fingerprint, remove_stale_temporaries, set_aside
from ..labels import EMOTIONS, SAMPLE_RATE
from ..progress import progress
from .audio_checks import audio_facts
from .corpora import read_manifest
from .speech_synthesis import Prosody, synthesize_batch

__all__ = [
    "DemoCorpusSettings",
    "DEMO_EMOTIONS",
    "EMOTION_PROSODY",
    "design_table",
    "demo_corpus_plan",
    "build_demo_corpus",
    "demo_corpus_damage",
    "load_demo_corpus",
]

logger = logging.getLogger(__name__)

SENTENCES: tuple[str, ...] = (
    "The meeting starts at nine tomorrow morning.",
    "I left the keys on the kitchen table.",
    "We are taking the train to the city.",
    "She said the package would arrive today.",
    "The blue car is parked outside the house.",
    "He finished reading the book last night.",
    "They moved the chairs into the other room.",
    "It is going to rain again this afternoon.",
)
# (voice variant, gender): males and females alternate so that each session pairs one of each.
VOICES: tuple[tuple[str, str], ...] = (
    ("m1", "M"), ("f1", "F"), ("m2", "M"), ("f2", "F"), ("m3", "M"), ("f3", "F"), ("m4", "M"), ("f4", "F"),
    ("m5", "M"), ("f5", "F"), ("m6", "M"), ("klatt", "F"), ("m7", "M"), ("klatt2", "F"),
)
# Per-emotion (mean, sd) offsets of pitch (espeak 0-100, added to the speaker's base), absolute pitch range (0-100),
# rate factor (times the speaker's base rate) and volume (0-200). Far apart on purpose (issue 16): with the earlier,
# heavily overlapping settings even a linear classifier on the settings themselves reached only 0.85 UAR across
# speakers and tiny.en learned 0.53-0.60, so the analyses looked inside a model that had hardly specialised. Anger
# and happiness, both fast, loud and high, are told apart by pitch level and range and by rate.
EMOTION_PROSODY: dict[str, dict[str, tuple[float, float]]] = {
    "anger":     dict(pitch=(4, 3), pitch_range=(60, 5), rate=(1.35, 0.05), volume=(170, 10)),
    "happiness": dict(pitch=(22, 3), pitch_range=(95, 3), rate=(1.05, 0.04), volume=(120, 10)),
    "neutral":   dict(pitch=(0, 3), pitch_range=(35, 5), rate=(1.00, 0.04), volume=(100, 10)),
    "sadness":   dict(pitch=(-12, 3), pitch_range=(8, 4), rate=(0.72, 0.04), volume=(70, 10)),
    # used only when asked for (`DemoCorpusSettings.emotions`), e.g. to test a run with more than four classes: fear
    # is the highest, fastest and narrowest in range; disgust the lowest, slowish, loud and wide in range
    "fear":      dict(pitch=(34, 3), pitch_range=(20, 4), rate=(1.60, 0.05), volume=(90, 10)),
    "disgust":   dict(pitch=(-24, 3), pitch_range=(75, 5), rate=(0.85, 0.04), volume=(145, 10)),
}
DEMO_EMOTIONS: tuple[str, ...] = tuple(EMOTION_PROSODY)  # every emotion the demo corpus can synthesise, in its order


@dataclass(frozen=True)
class DemoCorpusSettings:
    """What defines the demo corpus; the cache folder name is a hash of these fields."""

    seed: int = 0
    n_speakers: int = 12
    clips_per_speaker_emotion: int = 6
    snr_db: tuple[float, float] = (12.0, 35.0)
    max_silence_seconds: float = 0.3
    emotions: tuple[str, ...] = EMOTIONS  # kept in `DEMO_EMOTIONS` order, so a set makes one corpus whatever its order

    def __post_init__(self) -> None:
        unknown = [e for e in self.emotions if e not in EMOTION_PROSODY]
        if unknown:
            raise ValueError(f"DemoCorpusSettings.emotions: the demo corpus cannot synthesise {unknown}; it has "
                             f"prosody settings for {', '.join(DEMO_EMOTIONS)} (choose classes among these)")
        if len(set(self.emotions)) < 2:
            raise ValueError(f"DemoCorpusSettings.emotions={self.emotions}: give at least two of "
                             f"{', '.join(DEMO_EMOTIONS)}")
        object.__setattr__(self, "emotions", tuple(e for e in DEMO_EMOTIONS if e in self.emotions))
        if not 2 <= self.n_speakers <= len(VOICES) or self.n_speakers % 2:
            raise ValueError(f"DemoCorpusSettings.n_speakers={self.n_speakers}: use an even number from 2 to "
                             f"{len(VOICES)} (speakers come in male/female session pairs)")
        if self.clips_per_speaker_emotion < 1:
            raise ValueError("DemoCorpusSettings.clips_per_speaker_emotion must be at least 1")
        if not self.snr_db[0] <= self.snr_db[1]:
            raise ValueError(f"DemoCorpusSettings.snr_db={self.snr_db} must be (low, high)")

    def fingerprint(self) -> str:
        """The cache key: these settings and the design they are read with (the prosody of its emotions, sentences,
        voices). The paper's four emotions leave `emotions` out of the key, so a four-class corpus keeps the key it
        had before other emotions could be asked for (and its cached runs stay valid)."""
        fields = asdict(self)
        emotions = fields.pop("emotions")
        if tuple(emotions) != EMOTIONS:
            fields["emotions"] = list(emotions)
        return fingerprint([fields, {e: EMOTION_PROSODY[e] for e in emotions}, SENTENCES, VOICES], length=12)


def demo_corpus_plan(settings: DemoCorpusSettings = DemoCorpusSettings()) -> pd.DataFrame:
    """Every clip's metadata and prosody, drawn deterministically from `settings.seed` (no audio yet)."""
    rng = np.random.default_rng(settings.seed)
    rows = []
    for s in range(settings.n_speakers):
        variant, gender = VOICES[s]
        session = f"S{s // 2 + 1:02d}"
        base_pitch = rng.uniform(30, 45) if gender == "M" else rng.uniform(50, 65)
        base_rate = rng.uniform(150, 185)
        for emotion in settings.emotions:
            p = EMOTION_PROSODY[emotion]
            for k in range(settings.clips_per_speaker_emotion):
                draw = {name: rng.normal(*p[name]) for name in ("pitch", "pitch_range", "rate", "volume")}
                rows.append(dict(
                    utterance=f"demo_{session}{gender}_{emotion}_{k:02d}",
                    label=emotion, speaker=f"{session}{gender}", session=session,
                    dialog=f"{session}{'FM'[k % 2]}",  # two dialog groups per session, each with both speakers
                    text=SENTENCES[(s + k) % len(SENTENCES)],
                    voice=f"en+{variant}",
                    pitch=int(np.clip(round(base_pitch + draw["pitch"]), 0, 100)),
                    pitch_range=int(np.clip(round(draw["pitch_range"]), 0, 100)),
                    rate=int(np.clip(round(base_rate * draw["rate"]), 80, 450)),
                    volume=int(np.clip(round(draw["volume"]), 10, 200)),
                    snr_db=float(rng.uniform(*settings.snr_db)),
                    lead_silence=float(rng.uniform(0.05, settings.max_silence_seconds)),
                    tail_silence=float(rng.uniform(0.05, settings.max_silence_seconds)),
                    noise_seed=int(rng.integers(2**31)),
                ))
    return pd.DataFrame(rows)


def design_table(emotions: tuple[str, ...] = EMOTIONS) -> pd.DataFrame:
    """The prosody settings of `emotions` (`EMOTION_PROSODY`) as 'mean ± sd' text, one row per emotion."""
    names = {"pitch": "pitch offset (espeak 0-100, from the speaker's base)", "pitch_range": "pitch range (0-100)",
             "rate": "rate (x the speaker's base words/min)", "volume": "volume (0-200)"}
    rows = [{"emotion": e, **{label: f"{p[k][0]:g} ± {p[k][1]:g}" for k, label in names.items()}}
            for e, p in EMOTION_PROSODY.items() if e in emotions]
    return pd.DataFrame(rows)


def _finish(wave: np.ndarray, row) -> np.ndarray:
    """Pad with silence and add white noise at the planned SNR (relative to the speech's mean power)."""
    rng = np.random.default_rng(row.noise_seed)
    lead, tail = (np.zeros(int(s * SAMPLE_RATE), np.float32) for s in (row.lead_silence, row.tail_silence))
    signal = np.concatenate([lead, wave, tail])
    power = float(np.mean(wave.astype(np.float64) ** 2)) or 1e-8
    noise = rng.standard_normal(signal.size) * np.sqrt(power / 10 ** (row.snr_db / 10))
    out = signal + noise.astype(np.float32)
    peak = np.abs(out).max()
    return (out / peak * 0.99 if peak > 0.99 else out).astype(np.float32)


def build_demo_corpus(settings: DemoCorpusSettings = DemoCorpusSettings(), *,
                      cache_dir: str | Path | None = None, force: bool = False) -> Path:
    """Write the corpus once (16 kHz WAV files + `manifest.csv` + `plan.csv`) and return its folder.

    The folder is `<cache>/corpora/demo-<fingerprint>`; an existing complete one is reused. A damaged one (a file
    missing or changed since it was built: `demo_corpus_damage`) is the project's own cache, not the user's data:
    it is set aside, named in a warning, and built again. It is written to a temporary sibling and renamed into
    place, so an interrupted build leaves nothing half-made; `files.json` records each file's size and sha256;
    concurrent processes build it once (a lock file beside it).
    """
    target = cache_root(cache_dir) / "corpora" / f"demo-{settings.fingerprint()}"
    if not force and _complete(target, cache_dir):
        return target
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # a spawned child re-running the script
        raise RuntimeError("the demo corpus is being built by the process that started this one (its speech "
                           "synthesis runs in a spawned process, which imports your script again): put your "
                           "script's code under `if __name__ == \"__main__\":`, or it waits for itself")
    with FileLock(target.with_name(f"{target.name}.lock"), what=f"building the demo corpus {target.name}"):
        if not force and _complete(target, cache_dir):  # built by another process while this one waited
            return target
        remove_stale_temporaries(target.parent)
        return _build(settings, target)


def _complete(target: Path, cache_dir: str | Path | None = None) -> bool:
    """Whether the demo corpus folder `target` holds its manifest, plan and every clip they list, unchanged since
    its build; a damaged one is set aside, named in a warning."""
    if not (target / "manifest.csv").is_file():
        return False
    try:
        pd.read_csv(target / "plan.csv", usecols=["utterance", "text"])
    except (OSError, ValueError, KeyError) as err:  # pandas' parser errors are ValueErrors
        set_aside(target, reason=f"its plan.csv does not read back ({err})")
        return False
    damage = demo_corpus_damage(target, cache_dir=cache_dir)
    if damage:
        set_aside(target, reason=damage)
        return False
    return True


def _build(settings: DemoCorpusSettings, target: Path) -> Path:
    """Synthesize the corpus of `settings` into `target` (see `build_demo_corpus`)."""
    plan = demo_corpus_plan(settings)
    with atomic_directory(target) as tmp:
        requests = [(r.text, Prosody(voice=r.voice, rate=r.rate, volume=r.volume, pitch=r.pitch,
                                     pitch_range=r.pitch_range)) for r in plan.itertuples()]
        waves = synthesize_batch(requests, sample_rate=SAMPLE_RATE)  # one fresh process: repeatable output
        paths = []
        for row, wave in progress(zip(plan.itertuples(), waves), total=len(plan), desc="demo corpus", unit="clip"):
            rel = Path("wav") / row.speaker / f"{row.utterance}.wav"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(tmp / rel, _finish(wave, row), SAMPLE_RATE, subtype="PCM_16")
            paths.append(str(rel))
        plan.assign(path=paths).to_csv(tmp / "plan.csv", index=False)
        plan.assign(path=paths)[["path", "label", "speaker", "session", "dialog"]].to_csv(tmp / "manifest.csv",
                                                                                        index=False)
        (tmp / "settings.json").write_text(json.dumps(asdict(settings), indent=2))
        files = {rel: dict(size=(tmp / rel).stat().st_size, sha256=file_sha256(tmp / rel)) for rel in paths}
        (tmp / "files.json").write_text(json.dumps(files, indent=1))
    return target


def demo_corpus_damage(folder: Path, *, cache_dir: str | Path | None = None) -> str:
    """What is wrong with a built demo corpus folder: files its manifest lists that are missing, or whose content
    differs from `files.json` (sizes and sha256 written at build; the hashes come from `audio_facts`, computed
    once per file and reused by the validation); "" for an intact one. A folder built before `files.json` existed
    is checked for missing files only."""
    try:
        listed = pd.read_csv(folder / "manifest.csv")["path"].tolist()
        recorded = json.loads((folder / "files.json").read_text()) if (folder / "files.json").is_file() else {}
    except (OSError, ValueError, KeyError) as err:
        return f"its manifest or files.json is unreadable ({type(err).__name__})"
    missing = [p for p in listed if not (folder / p).is_file()]
    present = [p for p in listed if p not in missing and p in recorded]
    facts = audio_facts([str(folder / p) for p in present], cache_dir=cache_dir)
    changed = [p for p in present if facts[str(folder / p)]["sha256"] != recorded[p]["sha256"]]
    parts = [f"{len(missing)} file(s) missing, e.g. {missing[0]}" if missing else "",
             f"{len(changed)} file(s) changed since the build, e.g. {changed[0]}" if changed else ""]
    return "; ".join(p for p in parts if p)


def load_demo_corpus(settings: DemoCorpusSettings = DemoCorpusSettings(), *,
                     cache_dir: str | Path | None = None) -> pd.DataFrame:
    """The demo corpus as a corpus table (built first if needed); utterance ids are the planned ones, `text` the
    sentence each clip speaks."""
    folder = build_demo_corpus(settings, cache_dir=cache_dir)
    table = read_manifest(folder / "manifest.csv", classes=settings.emotions)
    table["utterance"] = [Path(p).stem for p in table["path"]]
    texts = pd.read_csv(folder / "plan.csv").set_index("utterance")["text"]
    table["text"] = texts.reindex(table["utterance"]).to_numpy()  # the sentence spoken: for the speaking rate
    table.attrs["source"] = f"demo corpus (synthetic, espeak-ng), settings {asdict(settings)}"
    table.attrs["speaker_gender"] = dict(zip(table["speaker"], table["speaker"].str[-1]))  # S01F: female
    return table.sort_values("utterance", kind="stable").reset_index(drop=True)
