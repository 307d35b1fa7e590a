"""Analysis: what the paper reads off trained models.

`tracing` is the only module touching model internals (one nnsight pass per model and analysis set); `sets`
picks the analysis set; `traces` caches a fold's traces; one pure module per analysis (`contributions`,
`logit_lens`, `separability`, `spectra`, `cka`) computes on arrays; `tables` turns traces into the chapters' tables.
"""
