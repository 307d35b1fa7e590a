"""Book: the Jupyter Book around the analyses.

`build` executes each chapter with papermill and builds the HTML (`python -m helpers.book`); `execution` is the
papermill engine with bounded waits it uses; `chapters` is what the notebooks call (settings, cached runs and
traces, explorers); `plots` draws the figures; `scorecard` states the paper's claims with verdicts against
`paper_reference`; `results` and `reproducibility` build the result and environment tables.
"""
