"""helpers: the executable edition of "Behind the Scenes: Mechanistic Interpretability of LoRA-Adapted Whisper for
Speech Emotion Recognition" (Ma, Sang, Li).

The subpackages follow the pipeline, and no stage imports a later one:

- `helpers.data`: corpora (IEMOCAP, CSV manifests, audio, validation), the synthetic demo corpus and its speech
  synthesis, cross-validation protocols, log-mel features and their cache;
- `helpers.models`: Whisper weights (tiny.en offline, Hub ids, local folders), the audio classifier, LoRA via peft;
- `helpers.training`: cross-validated runs, one fold's loop, the frozen-encoder baseline, metrics, devices, sweeps;
- `helpers.analysis`: one nnsight tracing pass, analysis sets, cached traces, one module per analysis, tables;
- `helpers.book`: the book driver and papermill engine, what the chapters call, plots, the claims scorecard.

Shared by all: `config` (run settings with help text), `labels` (class names, sample rate), `io` (cache folder,
atomic files, fingerprints), `progress` and `frontend` (progress bars and widgets for whoever is watching).
"""

__version__ = "0.1.0"
