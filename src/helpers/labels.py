"""The paper's class names (the default class list) and the audio rate every part of the pipeline shares.

A run's own classes come from its settings or its corpus (`RunConfig.classes`, resolved by
`helpers.training.runs.load_corpus` and recorded in the run's `run.json`); `EMOTIONS` is the default and what the
paper's per-class claims name.
"""

from __future__ import annotations

__all__ = ["EMOTIONS", "SAMPLE_RATE"]

# the paper's four IEMOCAP classes, in the official code's label order (0 anger, 1 happiness, 2 neutral, 3 sadness)
EMOTIONS: tuple[str, ...] = ("anger", "happiness", "neutral", "sadness")
SAMPLE_RATE = 16_000  # Hz: Whisper's input rate; every corpus reader resamples to it
