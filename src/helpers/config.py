"""Run configuration as data: one frozen dataclass, three profiles (`smoke`, `demo`, `paper`), keyword overrides.

Every field carries its help text (dataclass field metadata, as peft's configs do): the CLI's flags
(`python -m helpers train --help`) and the README's settings table are generated from it. Every field can be
overridden from papermill (`-p epochs 3`), the CLI (`--epochs 3`) or Python (`make_config("demo", epochs=3)`); the
resolved config is saved as JSON beside every result, and its hash names the run directory.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import MISSING, Field, asdict, dataclass, field, fields, replace
from typing import Any, Literal

from .data.levels import LEVEL_METHODS
from .data.protocols import PROTOCOLS
from .errors import ConfigError
from .io import parse_list
from .labels import EMOTIONS
from .models.classifier import ATTENTION_KERNELS
from .models.lora import ATTENTION_PROJECTIONS, LoraSettings
from .models.pooling import POOLINGS

__all__ = ["RunConfig", "PROFILES", "CLASSES_ALL", "make_config", "setting_from_text", "setting_help",
           "settings_table", "parse_classes", "parse_label_map"]

Mode = Literal["lora", "frozen"]
_LORA = LoraSettings()  # the one place LoRA defaults are written
CLASSES_ALL = ("all",)  # RunConfig.classes meaning "every class the corpus has" (resolved when the corpus is read)
_CLASSES_EXAMPLE = "anger,happiness,neutral,sadness,fear"
_LABEL_MAP_EXAMPLE = "neu=neutral,ang=anger"


def parse_classes(value: Any) -> tuple[str, ...]:
    """`"anger,sadness"`, `["anger", "sadness"]` or `"all"` -> a tuple of class names (`("all",)` for all).

    Refused with a message naming the setting and the fix: no class, fewer than two, a repeated name, "all" mixed
    with names.
    """
    if isinstance(value, str) and value.strip().lower() == "all":
        return CLASSES_ALL
    names = parse_list(value, str, name="classes")
    if not names:
        raise ConfigError(f"RunConfig.classes={value!r} names no class; give comma-separated class names such as "
                          f"{_CLASSES_EXAMPLE}, or 'all' for every class of the corpus")
    if "all" in names:
        raise ConfigError(f"RunConfig.classes={value!r}: 'all' stands alone (every class of the corpus); give it "
                          "alone or list the classes")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"RunConfig.classes={value!r} repeats {repeated}; list each class once")
    if len(names) < 2:
        raise ConfigError(f"RunConfig.classes={value!r}: a classifier needs at least two classes; add more, e.g. "
                          f"{_CLASSES_EXAMPLE}")
    return names


def parse_label_map(value: Any) -> tuple[tuple[str, str], ...] | None:
    """`"neu=neutral,ang=anger"`, a dict or a list of (raw, class) pairs -> ((raw, class), ...) in the given order;
    None or "" -> None (the corpus reader's default map). Refused with a message naming the item and the fix."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "None", "none")):
        return None
    if isinstance(value, str):
        pairs = []
        for item in value.split(","):
            if not item.strip():
                continue
            raw, sep, target = item.partition("=")
            if not sep or "=" in target:
                raise ConfigError(f"RunConfig.label_map item {item.strip()!r} is not raw=class; write the map as "
                                  f"comma-separated raw=class pairs, e.g. {_LABEL_MAP_EXAMPLE}")
            pairs.append((raw, target))
    elif isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        pairs = [tuple(p) for p in value]
    else:
        raise ConfigError(f"RunConfig.label_map={value!r}: give raw=class pairs such as {_LABEL_MAP_EXAMPLE}, a dict "
                          "or None (the reader's default map)")
    pairs = [(str(raw).strip(), str(target).strip()) for raw, target in pairs]
    for raw, target in pairs:
        if not raw or not target:
            raise ConfigError(f"RunConfig.label_map item {raw}={target} has an empty side; write each pair as "
                              f"raw=class, e.g. {_LABEL_MAP_EXAMPLE}")
    raws = [raw for raw, _ in pairs]
    repeated = sorted({r for r in raws if raws.count(r) > 1})
    if repeated:
        raise ConfigError(f"RunConfig.label_map maps {repeated} more than once; map each raw label to one class")
    if not pairs:
        raise ConfigError(f"RunConfig.label_map={value!r} holds no pair; give raw=class pairs such as "
                          f"{_LABEL_MAP_EXAMPLE}, or leave it unset for the reader's default map")
    return tuple(pairs)


# ----------------------------------------------------------------------------------------------------------------
# One typing of every scalar setting, whether it comes from Python, the CLI (text) or papermill (text or a number)

_KINDS: dict[str, type] = {"int": int, "float": float, "bool": bool}
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _scalar_field(name: str) -> Field:
    """The RunConfig field `name`; an unknown name is refused with the valid ones."""
    for f in fields(RunConfig):
        if f.name == name:
            return f
    raise ConfigError(f"unknown setting {name!r}; valid ones: {sorted(f.name for f in fields(RunConfig))}")


def _wanted(f: Field) -> str:
    """What a valid value of field `f` is, in words, with its meaning: the fix every refusal states."""
    kind = _KINDS.get(str(f.type))
    low, high, above = (f.metadata.get(k) for k in ("low", "high", "above"))
    noun = {int: "a whole number", float: "a number", bool: "true or false"}.get(kind, "a value")
    if low is not None and high is not None:
        noun += f" from {low:g} to {high:g}"
    elif low is not None:
        noun += f" of at least {low:g}"
    elif above is not None:
        noun += f" above {above:g}"
    return f"give {noun} ({f.metadata['help']})"


def setting_from_text(name: str, text: str) -> Any:
    """Text given for setting `name` (a CLI flag, a papermill or book parameter) as its field's type: the one parser
    of settings written as text. Booleans are true/false, yes/no or 1/0 (any case), nothing else; whole numbers
    refuse `2.5` and `abc`. Text settings (names, lists) are returned as they are, for their field to parse."""
    f = _scalar_field(name)
    kind, value = _KINDS.get(str(f.type)), text.strip()
    if kind is bool:
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigError(f"RunConfig.{name}={text!r} is not a boolean; {_wanted(f)}")
    if kind is int:
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"RunConfig.{name}={text!r} is not a whole number; {_wanted(f)}") from None
    if kind is float:
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"RunConfig.{name}={text!r} is not a number; {_wanted(f)}") from None
    return text


def _typed(f: Field, value: Any) -> Any:
    """`value` of field `f` as the field's type, within its bounds, or a ConfigError naming setting, value and fix.

    Text goes through `setting_from_text`; a whole float (3.0, as papermill reads `-p epochs 3.0`) is an int, 1/0
    are booleans, an int is a float where the field is one; anything else of the wrong type is refused."""
    kind, given = _KINDS.get(str(f.type)), value
    if kind is None:
        return value
    if isinstance(value, str):
        value = setting_from_text(f.name, value)
    if kind is bool:
        if isinstance(value, numbers.Integral) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"RunConfig.{f.name}={given!r} is not a boolean; {_wanted(f)}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"RunConfig.{f.name}={given!r} is not {'a whole number' if kind is int else 'a number'}; "
                          f"{_wanted(f)}")
    if kind is int:
        if not float(value).is_integer():
            raise ConfigError(f"RunConfig.{f.name}={given!r} is not a whole number; {_wanted(f)}")
        value = int(value)
    else:
        value = float(value)
    low, high, above = (f.metadata.get(k) for k in ("low", "high", "above"))
    if (low is not None and value < low) or (high is not None and value > high) or (above is not None
                                                                                   and value <= above):
        raise ConfigError(f"RunConfig.{f.name}={given!r} is out of range; {_wanted(f)}")
    return value


def _setting(default: Any, help: str, *, choices: tuple | None = None, low: float | None = None,
             high: float | None = None, above: float | None = None) -> Any:
    """A RunConfig field: its default, help text, closed choices and bounds (`low <= value <= high`,
    `value > above`), all checked in `RunConfig.__post_init__`."""
    return field(default=default, metadata={"help": help, "choices": choices, "low": low, "high": high,
                                            "above": above})


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a cross-validation run."""

    profile: str = _setting("demo", "the profile these settings start from",
                            choices=("smoke", "demo", "cpu-real", "paper"))
    model: str = _setting("tiny.en", "Whisper: tiny.en (offline), a Hugging Face id such as openai/whisper-large-v2, "
                                     "or a local Hugging Face folder")
    data: str = _setting("demo", "corpus: demo (synthetic, made on the spot); name:/path with name ravdess, cremad, "
                                 "tess, emodb, iemocap or manifest; a .csv manifest with path,label,speaker"
                                 "[,session,dialog]; or a corpus folder recognised by its layout")
    classes: tuple[str, ...] = _setting(EMOTIONS, "classes in the model's output order, comma-separated; 'all': "
                                        "every class the corpus has (the reader's list; the demo: its six)")
    label_map: tuple[tuple[str, str], ...] | None = _setting(
        None, "raw label -> class as comma-separated raw=class pairs (IEMOCAP codes such as neu=neutral, a "
              "manifest's labels, the English class names of RAVDESS, CREMA-D, TESS and EmoDB such as calm=neutral); "
              "None: the reader's default map; unmapped labels are dropped and counted")
    protocol: str = _setting("speaker", "folds: speaker (leave one speaker out), session (leave one session out), "
                                        "dialog (the official code's leaky folds), speakers-k (k speaker groups, "
                                        "for corpora without sessions)", choices=PROTOCOLS)
    folds_k: int = _setting(5, "protocol speakers-k: number of speaker groups, one test fold each", low=2)
    validation_speakers: int = _setting(2, "protocol speakers-k: validation speakers per fold, from the next group",
                                        low=1)
    mode: Mode = _setting("lora", "lora: LoRA + projector + classifier; frozen: projector + classifier on cached "
                                  "frozen-encoder outputs", choices=("lora", "frozen"))
    level: str = _setting("none", "clip level before the log-mel: none (as recorded; the official code), peak (each "
                                  "clip's peak at -1 dBFS), loudness (each clip's active-speech RMS at -23 dBFS)",
                          choices=LEVEL_METHODS)
    pooling: str = _setting("mean", "time pooling of the classifier: mean (all positions, padding included: the "
                                    "official model) or speech (each clip's speech positions only, every clip "
                                    "computed at its own length; length-bucketed batches; a different model)",
                            choices=POOLINGS)
    max_seconds: int = _setting(0, "input length in whole seconds, 1..30 (30: stock Whisper); 0 fits 99% of the "
                                   "clips (their 99th percentile, rounded up; longer clips are cut and counted)",
                                low=0, high=30)
    fit_seconds_cap: int = _setting(30, "max_seconds=0: the longest input it may fit to, in whole seconds (1..30); "
                                        "longer clips are cut", low=1, high=30)
    rank: int = _setting(_LORA.rank, "LoRA rank r", low=1)
    alpha: int = _setting(_LORA.alpha, "LoRA alpha (the update is scaled by alpha / r)", low=1)
    dropout: float = _setting(_LORA.dropout, "LoRA dropout on the adapter input", low=0.0)
    target_modules: tuple[str, ...] = _setting(_LORA.target_modules, "LoRA targets, comma-separated from q_proj, "
                                               "k_proj, v_proj, out_proj, fc1, fc2; 'attention' for the first four")
    epochs: int = _setting(20, "training epochs per fold", low=1)
    batch_size: int = _setting(8, "clips per optimizer step", low=1)
    lr: float = _setting(5e-5, "AdamW learning rate (linear decay to 0, no warm-up)", above=0.0)
    weight_decay: float = _setting(0.0, "AdamW weight decay", low=0.0)
    max_grad_norm: float = _setting(1.0, "gradient clipping norm, 0 = off (1.0: the HF Trainer default the "
                                         "official code ran with)", low=0.0)
    select_by: str = _setting("uar", "validation metric that picks the epoch: uar, or war (accuracy, what the "
                              "official Trainer used)", choices=("uar", "war", "macro_f1"))
    seed: int = _setting(42, "seed of the head, LoRA and batch order (fold i uses seed + i)", low=0)
    max_folds: int = _setting(0, "train the first n folds (sorted by name); 0 = all", low=0)
    demo_speakers: int = _setting(12, "demo corpus: synthetic speakers", low=2, high=14)
    demo_clips: int = _setting(6, "demo corpus: clips per speaker and emotion", low=1)
    demo_seed: int = _setting(0, "demo corpus: seed of its sentences and voices", low=0)
    on_bad: str = _setting("error", "unusable audio: error (stop with a report) or skip (leave out and count)",
                           choices=("error", "skip"))
    device: str = _setting("auto", "auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps")
    precision: str = _setting("auto", "autocast dtype: auto (bf16 or fp16 on CUDA, fp32 elsewhere), fp32, bf16, fp16",
                              choices=("auto", "fp32", "bf16", "fp16"))
    attention: str = _setting("sdpa", "attention kernel: sdpa (fused scaled-dot-product) or eager",
                              choices=ATTENTION_KERNELS)
    compile: bool = _setting(False, "torch.compile the model (about 30 s of compiling first; small gain on CPU)")
    tf32: bool = _setting(True, "TF32 matmuls for fp32 work on CUDA (no effect elsewhere)")
    allow_download: bool = _setting(False, "let a Hugging Face id be downloaded if it is not in the local cache")

    def __post_init__(self) -> None:
        try:
            self._validate()
        except ConfigError:
            raise
        except ValueError as err:  # a part's own check (LoraSettings, parse_list) names the setting already
            raise ConfigError(str(err)) from None

    def _validate(self) -> None:
        """Type every scalar setting (text parsed as its field says), check bounds and choices, parse the lists."""
        for f in fields(self):
            object.__setattr__(self, f.name, _typed(f, getattr(self, f.name)))
        object.__setattr__(self, "classes", parse_classes(self.classes))
        object.__setattr__(self, "label_map", parse_label_map(self.label_map))
        self._check_label_map()
        targets = self.target_modules
        targets = ATTENTION_PROJECTIONS if targets == "attention" else parse_list(targets, name="target_modules")
        object.__setattr__(self, "target_modules", tuple(targets))
        _ = self.lora  # validates rank/alpha/dropout/targets
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"RunConfig.{f.name}={getattr(self, f.name)!r}; choose one of {choices}")

    def _check_label_map(self) -> None:
        """A label_map must fit the classes: every target among them, every class reached by some raw label."""
        if self.label_map is None:
            return
        if self.data == "demo":
            raise ConfigError("RunConfig.label_map applies to corpora read from disk; the demo corpus synthesises "
                              "the classes in `classes` directly: drop label_map, or set classes (e.g. "
                              f"classes={_CLASSES_EXAMPLE})")
        if self.classes == CLASSES_ALL:
            return
        targets = [target for _, target in self.label_map]
        outside = [f"{raw}={target}" for raw, target in self.label_map if target not in self.classes]
        if outside:
            raise ConfigError(f"RunConfig.label_map maps {', '.join(outside)}, but classes={','.join(self.classes)}; "
                              "add those classes to classes (or classes=all), or map those labels to one of them")
        unreached = [c for c in self.classes if c not in targets]
        if unreached:
            raise ConfigError(f"RunConfig.classes lists {unreached}, but label_map maps no label to them; map labels "
                              f"to them (e.g. raw={unreached[0]}) or leave them out of classes")

    @property
    def every_class(self) -> bool:
        """True when `classes` is "all": the run's classes are the corpus's, known once it is read."""
        return self.classes == CLASSES_ALL

    @property
    def lora(self) -> LoraSettings:
        return LoraSettings(rank=self.rank, alpha=self.alpha, dropout=self.dropout,
                            target_modules=self.target_modules)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


PROFILES: dict[str, RunConfig] = {
    # tests: a few dozen demo clips, 2 folds, 1 epoch
    "smoke": RunConfig(profile="smoke", demo_speakers=4, demo_clips=2, epochs=1, max_folds=2, lr=5e-4, rank=8,
                       alpha=16, batch_size=8),
    # CPU default: tiny.en, demo corpus, speaker folds, 3 s inputs (the clips last 2.5 s on average; 61 of 288,
    # nearly all slow "sadness" clips, are longer and lose their last 0.01-1.9 s); 3 epochs (validation UAR
    # levels off by epoch 2-3 on this corpus); sized so the whole demo book, with its verdicts over 4 folds x 3
    # training seeds, builds within 15 minutes on a 2-core laptop
    "demo": RunConfig(profile="demo", epochs=3, max_folds=4, lr=5e-4, batch_size=8, max_seconds=3),
    # real human speech on a CPU (a public corpus such as RAVDESS; see the README): tiny.en, LoRA on the attention
    # projections q, k, v, out, inputs fitted to the corpus up to 8 s, 3 speaker-independent folds of speaker
    # groups with 2 validation speakers each; sized so that the whole book on a 24-actor corpus (672 clips of the
    # four classes) builds within 45 minutes on a 2-core CPU
    "cpu-real": RunConfig(profile="cpu-real", data="ravdess:RAVDESS", protocol="speakers-k", folds_k=3,
                          validation_speakers=2, fit_seconds_cap=8, target_modules=ATTENTION_PROJECTIONS, epochs=5,
                          lr=5e-4, batch_size=8),
    # the paper: large-v2, IEMOCAP, 10 folds, its hyperparameters, 30 s inputs, the official (leaky) folds with the
    # epoch picked by accuracy, as its Trainer did (metric_for_best_model="accuracy")
    "paper": RunConfig(profile="paper", model="openai/whisper-large-v2", data="IEMOCAP_full_release",
                       protocol="dialog", max_seconds=30, epochs=20, lr=5e-5, batch_size=8, seed=42, select_by="war"),
}


def make_config(profile: str = "demo", **overrides: Any) -> RunConfig:
    """The `profile`'s config with `overrides` applied (None values ignored; unknown names are refused with the
    valid ones listed)."""
    if profile not in PROFILES:
        raise ConfigError(f"profile={profile!r}; choose one of {sorted(PROFILES)}")
    valid = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown}; valid ones: {sorted(valid)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(PROFILES[profile], **overrides)


def setting_help(name: str) -> str:
    """The help text of RunConfig field `name`."""
    return next(f.metadata["help"] for f in fields(RunConfig) if f.name == name)


def settings_table() -> str:
    """The README's settings table (Markdown): every field, its default and each profile's value where it differs."""
    names = tuple(PROFILES)
    rows = [f"| setting | default | {' | '.join(names)} | meaning |", "|---|---|" + "---|" * len(names) + "---|"]
    for f in fields(RunConfig):
        if f.name == "profile":
            continue
        default = f.default if f.default is not MISSING else None
        cells = [_cell(getattr(PROFILES[p], f.name)) if getattr(PROFILES[p], f.name) != default else ""
                 for p in names]
        rows.append(f"| `{f.name}` | {_cell(default)} | {' | '.join(cells)} | {f.metadata['help']} |")
    return "\n".join(rows)


def _cell(value: Any) -> str:
    if isinstance(value, tuple):
        return f"`{','.join(v if isinstance(v, str) else '='.join(v) for v in value)}`"
    return f"`{value}`"
