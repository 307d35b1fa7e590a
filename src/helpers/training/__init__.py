"""Training: cross-validated LoRA and frozen-encoder runs (the paper's Table 1).

`runs` prepares a run (corpus, folds, directory), trains its folds and collects tidy results; `loop` is one fold's
training loop; `frozen` caches frozen-encoder outputs for the head-only baseline; `metrics` scores predictions
(UAR, WAR, macro-F1) and summarises folds; `device` picks device and precision; `sweep` runs a grid of runs fold by
fold, here or on Ray.
"""
