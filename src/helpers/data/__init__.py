"""Data: everything before a model sees a clip.

`corpora` reads corpus tables (the IEMOCAP release, CSV manifests), loads audio as 16 kHz mono and validates it;
`demo_corpus` synthesizes the offline demo corpus with `speech_synthesis` (espeak-ng); `protocols` makes the
cross-validation folds (speaker, session, and the official code's leaky dialog folds); `features` computes log-mel
features and caches them per corpus. No module here imports a model.
"""
