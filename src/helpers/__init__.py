"""helpers: the executable edition of "Behind the Scenes: Mechanistic Interpretability of LoRA-Adapted Whisper for
Speech Emotion Recognition" (Ma, Sang, Li). One module per concept:

- `helpers.models`: Whisper weights (offline tiny.en, HF ids, local folders), the audio classifier, LoRA via peft;
- `helpers.ctranslate2_format`: reading the CTranslate2 copy of tiny.en;
- `helpers.corpora`: corpus tables (IEMOCAP, CSV manifests), audio loading, validation;
- `helpers.demo_corpus`: the synthetic espeak-ng emotional-speech corpus;
- `helpers.protocols`: speaker / session / dialog cross-validation folds;
- `helpers.speech_synthesis`: offline espeak-ng speech;
- `helpers.device`: CPU/CUDA/MPS and mixed precision;
- `helpers.paths`: the cache folder.
"""

__version__ = "0.1.0"
