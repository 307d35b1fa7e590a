"""What the chapter notebooks call: one `setup` per chapter (settings, cache, the run-settings box, traces), cached
runs and traces per profile, and explorers that are widgets in Jupyter and pre-rendered figures with controls that
work in the static book."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from ..analysis.causal import CausalSettings, fold_interventions
from ..analysis.sets import AnalysisSettings
from ..analysis.traces import UNIT_KINDS, fold_traces, rank_runs
from ..config import make_config
from ..frontend import live_frontend
from ..io import CACHE_ENV, parse_list
from ..progress import quiet_library_progress
from ..training.runs import RunResults, corpus_classes, load_corpus, run_cross_validation

__all__ = ["CAUSAL_DEFAULTS", "causal_settings", "causal_records", "ANALYSIS_DEFAULTS", "ANALYSIS_SEEDS",
           "SEED_FOLDS", "PROTOCOLS", "PROTOCOL_FOLDS", "Chapter", "setup", "run_classes",
           "parse_ranks", "parse_seeds", "resolve_seeds", "main_runs", "protocol_runs", "unsplittable_protocols",
           "analysis_settings",
           "main_traces", "main_units", "rank_traces", "seed_runs", "rank_evidence_for", "full_scorecard",
           "VERDICT_COLORS", "SCORECARD_PAGE", "claim_anchor", "claims_html", "criteria_markdown", "show_claims",
           "show_settings", "show", "show_table", "explore"]

# analysis set per profile: the demo's validation speaker has only 6 clips per class, so it uses validation + test
ANALYSIS_DEFAULTS = {"smoke": AnalysisSettings(per_class=4), "demo": AnalysisSettings(),
                     # LoRA on 4 projections at 5 s: all frames made 3.7 GiB of traces per fold unit, and the five
                     # verdict units with their analyses exhausted 24 GiB; 50 frames per clip, as the paper profile
                     "cpu-real": AnalysisSettings(lora_frames=50),
                     "paper": AnalysisSettings(split="validation", per_class=25, lora_frames=50)}
# training seeds of the main LoRA/frozen pair that every verdict's interval spans; the first seed runs every fold,
# the others the first SEED_FOLDS folds (0 = all): the demo's 15-minute budget allows 4 + 2 + 2 fold runs
ANALYSIS_SEEDS = {"smoke": (42,), "demo": (42, 43, 44), "cpu-real": (42, 43, 44), "paper": (42,)}
SEED_FOLDS = {"smoke": 0, "demo": 2, "cpu-real": 1, "paper": 0}
# the protocol comparison: which protocols, and how many folds each beyond the main one (0 = all)
PROTOCOLS = {"smoke": ("dialog", "speaker", "session"), "demo": ("dialog", "speaker"),
             "cpu-real": ("dialog", "speaker"), "paper": ("dialog", "speaker", "session")}
PROTOCOL_FOLDS = {"smoke": 2, "demo": 1, "cpu-real": 1, "paper": 0}


def parse_ranks(ranks) -> tuple[int, ...]:
    """'8,32,64' or [8, 32, 64] -> (8, 32, 64)."""
    values = parse_list(ranks, int, name="ranks")
    if not values or any(r < 1 for r in values):
        raise ValueError(f"ranks={ranks!r}: give positive integers such as '8,32,64'")
    return values


@dataclass
class Chapter:
    """A chapter's resolved settings: the profile, the run settings it overrides, and its analysis set."""

    profile: str
    overrides: dict[str, Any] = field(default_factory=dict)
    fold: int = 0
    analysis: AnalysisSettings | None = None
    traces: dict | None = None
    units: list[dict] | None = None
    seeds: tuple[int, ...] = ()
    _classes: tuple[str, ...] | None = field(default=None, repr=False)

    @property
    def classes(self) -> tuple[str, ...]:
        """The run's classes in the model's output order (their number sets chance, 1 / len): the traced run's
        where the chapter has traces, else resolved from the settings as the runs resolve them."""
        if self._classes is None:
            traced = (self.traces or {}).get("classes")
            self._classes = tuple(traced) if traced else run_classes(self.profile, **self.overrides)
        return self._classes


def run_classes(profile: str, **overrides) -> tuple[str, ...]:
    """The classes a profile's runs use under `overrides`: the `classes` setting, or for "all" every class the
    corpus has (read once to find out, as `load_corpus` does for a run)."""
    config = make_config(profile, **_clean(overrides))
    return corpus_classes(load_corpus(config)) if config.every_class else tuple(config.classes)


def setup(profile: str, *, cache_dir: str | None = None, traces: bool = False, fold: int = 0,
          split: str | None = None, per_class: int | None = None, seeds=None, show: dict | None = None,
          **overrides) -> Chapter:
    """Every chapter's first call: point at the cache, check the settings (a typo fails here, before any work),
    show the run-settings box, and, with `traces=True`, trace every fold of the main runs for each of `seeds`
    (`chapter.units`, what the verdicts' intervals span) and keep fold `fold` of the first seed for the figures
    (`chapter.traces`).

    `overrides` are run settings (`None` = the profile's); `show` adds chapter settings to the box.
    """
    if cache_dir:
        os.environ[CACHE_ENV] = str(cache_dir)
    if not live_frontend():
        quiet_library_progress()  # library progress bars would be dead widgets in a headless run
    overrides = _clean(overrides)
    make_config(profile, **overrides)
    chapter = Chapter(profile, overrides, fold)
    seeds = resolve_seeds(profile, seeds, overrides)
    chapter.seeds = seeds
    extra = {"fold": fold, "seeds": ",".join(map(str, seeds))} if traces else {}
    show_settings(profile=profile, **overrides, **extra, **(show or {}))
    if traces:
        from IPython.display import Markdown, display

        chapter.analysis = analysis_settings(profile, split=split, per_class=per_class)
        chapter.units = main_units(profile, seeds=seeds, analysis=chapter.analysis, **overrides)
        first = [u for u in chapter.units if u["seed"] == seeds[0]]
        if not 0 <= fold < len(first):
            raise ValueError(f"fold={fold}: the main runs have folds 0..{len(first) - 1}")
        chapter.traces = first[fold]
        n_set, a = len(chapter.traces["analysis_set"]), chapter.analysis
        per_seed = ", ".join(f"{sum(u['seed'] == s for u in chapter.units)} of seed {s}" for s in seeds)
        display(Markdown(
            f"Analysis sets: {a.split} split of each fold, up to {a.per_class} clips per class; figures show fold "
            f"{fold} of seed {seeds[0]} ({n_set} clips); verdicts and their 95% intervals span all "
            f"{len(chapter.units)} units (fold runs: {per_seed})."))
    return chapter


def _clean(overrides: dict) -> dict:
    return {k: v for k, v in overrides.items() if v is not None}


def main_runs(profile: str, *, executor: str = "local", address: str | None = None,
              **overrides) -> dict[str, RunResults]:
    """The LoRA and frozen runs of a profile (trained once, then read from the cache).

    `executor="ray"` trains their folds as a sweep on the Ray cluster at `address` (a local instance if None).
    """
    overrides = _clean(overrides)
    if executor == "local":
        return {mode: run_cross_validation(profile, **{**overrides, "mode": mode}) for mode in ("lora", "frozen")}
    from ..training.sweep import SweepSpec, run_sweep

    grid = {k: (overrides.pop(k),) for k in ("model", "protocol", "rank") if k in overrides}
    overrides.pop("mode", None)  # Table 1 is both modes
    if "rank" in grid:  # as in a local run: a rank override leaves alpha at the profile's (a sweep's ranks would not)
        overrides.setdefault("alpha", make_config(profile).alpha)
    spec = SweepSpec(profile=profile, modes=("lora", "frozen"), models=grid.get("model", ()),
                     protocols=grid.get("protocol", ()), ranks=grid.get("rank", ()), overrides=overrides)
    report = run_sweep(spec, executor=executor, address=address)
    if len(report.failed):
        failures = "; ".join(f"{r.name}: {r.error} (log {r.log})" for r in report.failed.itertuples())
        raise RuntimeError(f"{len(report.failed)} fold task(s) failed after retries: {failures}")
    return {run.config.mode: run for run in report.results}


def protocol_runs(profile: str, protocols=None, **overrides) -> list[RunResults]:
    """LoRA and frozen runs under each protocol (None: the profile's `PROTOCOLS` and the main runs' protocol, e.g.
    `speakers-k`, which the comparison is read against), with the profile's fold limit.

    A comparison protocol this corpus cannot be split by (too few speakers or sessions, e.g. TESS's two speakers
    under `speaker`) is not run; `unsplittable_protocols` says which and why, and the chapter shows it."""
    overrides = _clean(overrides)
    main_protocol = make_config(profile, **overrides).protocol  # keeps all the folds of the main runs
    if protocols is None:
        protocols = tuple(dict.fromkeys((*PROTOCOLS.get(profile, ("dialog", "speaker", "session")), main_protocol)))
    impossible = unsplittable_protocols(profile, protocols, **overrides)
    out = []
    for protocol in protocols:
        if protocol in impossible and protocol != main_protocol:
            continue
        limit = ({"max_folds": _fold_limit(PROTOCOL_FOLDS.get(profile, 0), overrides.get("max_folds"))}
                 if protocol != main_protocol else {})
        for mode in ("lora", "frozen"):
            out.append(run_cross_validation(profile, **{**overrides, **limit, "protocol": protocol, "mode": mode}))
    return out


def _fold_limit(profile_limit: int, asked: int | None) -> int:
    """The folds a comparison protocol runs (0 = all): the profile's `PROTOCOL_FOLDS`, never more than a
    `max_folds` the reader asked for (the paper's 0 would otherwise run every fold of a rehearsal cut to one)."""
    limits = [n for n in (profile_limit, asked or 0) if n > 0]
    return min(limits) if limits else 0


def unsplittable_protocols(profile: str, protocols=None, **overrides) -> dict[str, str]:
    """{protocol: why} for each of `protocols` (None: the profile's `PROTOCOLS`) that cannot split this run's
    corpus into folds (`helpers.data.protocols.make_folds`'s reason)."""
    from ..data.protocols import make_folds

    config = make_config(profile, **_clean(overrides))
    protocols = PROTOCOLS.get(profile, ("dialog", "speaker", "session")) if protocols is None else protocols
    table = load_corpus(config)
    out = {}
    for protocol in dict.fromkeys(protocols):
        try:
            make_folds(table, protocol, k=config.folds_k, n_validation=config.validation_speakers)
        except ValueError as err:
            out[protocol] = str(err)
    return out


def analysis_settings(profile: str, **overrides) -> AnalysisSettings:
    """The profile's analysis-set settings with overrides (None values ignored)."""
    return replace(ANALYSIS_DEFAULTS.get(profile, AnalysisSettings()), **_clean(overrides))


def main_traces(profile: str, *, fold: int = 0, analysis: AnalysisSettings | None = None, **overrides) -> dict:
    """Traces of the trained LoRA, frozen and untrained models on the analysis set of fold `fold`."""
    runs = main_runs(profile, **overrides)
    return fold_traces(runs["lora"], runs["frozen"], fold_index=fold,
                       settings=analysis or analysis_settings(profile))


def parse_seeds(seeds) -> tuple[int, ...]:
    """'42,43,44' or [42, 43] -> (42, 43, 44)."""
    values = parse_list(seeds, int, name="seeds")
    if not values:
        raise ValueError(f"seeds={seeds!r}: give one or more integers such as '42,43,44'")
    return values


def resolve_seeds(profile: str, seeds=None, overrides: dict | None = None) -> tuple[int, ...]:
    """The training seeds a chapter spans: `seeds` if given, else a `seed` override alone, else the profile's."""
    if seeds is not None:
        return parse_seeds(seeds)
    if overrides and overrides.get("seed") is not None:
        return (int(overrides["seed"]),)
    return ANALYSIS_SEEDS.get(profile, (make_config(profile).seed,))


def main_units(profile: str, *, seeds=None, analysis: AnalysisSettings | None = None, **overrides) -> list[dict]:
    """The units every verdict's interval is computed over: one {kind: Trace} per fold of the main runs and per
    training seed (`seeds`, None = the profile's `ANALYSIS_SEEDS`).

    Untrained controls depend on the fold's clips only, so the first seed's are shared by the others (traced once).
    """
    overrides = _clean(overrides)
    seeds = resolve_seeds(profile, seeds, overrides)
    settings = analysis or analysis_settings(profile)
    units, controls = [], {}
    for seed in seeds:
        runs = main_runs(profile, **_seed_overrides(profile, seed, seeds, overrides))
        for fold_index in range(len(runs["lora"].folds)):
            shared = controls.get(fold_index, {})
            kinds = ("lora", "frozen") if shared else UNIT_KINDS
            unit = fold_traces(runs["lora"], runs["frozen"], fold_index=fold_index, settings=settings, kinds=kinds)
            unit = {**shared, **unit, "seed": seed, "fold": fold_index}
            controls.setdefault(fold_index, {k: v for k, v in unit.items() if k.startswith("untrained-")})
            units.append(unit)
    return units


def rank_traces(profile: str, ranks, *, fold: int = 0, analysis: AnalysisSettings | None = None,
                alpha_rule: str = "scaled", **overrides) -> dict:
    """LoRA traces of one fold at each rank (runs limited to the folds needed; `alpha_rule` as `rank_runs`)."""
    overrides = _clean(overrides)
    overrides.setdefault("max_folds", fold + 1)  # only this fold is analysed
    runs = rank_runs(profile, parse_ranks(ranks), alpha_rule=alpha_rule, **overrides)
    settings = analysis or analysis_settings(profile)
    return {r: fold_traces(run, None, fold_index=fold, settings=settings, kinds=("lora",))["lora"]
            for r, run in runs.items()}


def seed_runs(profile: str, seeds=None, **overrides) -> list[RunResults]:
    """The main LoRA and frozen runs for each of `seeds` (None = the profile's `ANALYSIS_SEEDS`), trained once."""
    overrides = _clean(overrides)
    seeds = resolve_seeds(profile, seeds, overrides)
    return [run for s in seeds for run in main_runs(profile, **_seed_overrides(profile, s, seeds, overrides)).values()]


def _seed_overrides(profile: str, seed: int, seeds: tuple[int, ...], overrides: dict) -> dict:
    """Run settings for one training seed: seeds after the first train the profile's `SEED_FOLDS` folds."""
    limit = SEED_FOLDS.get(profile, 0)
    out = {**overrides, "seed": seed}
    if seed != seeds[0] and limit:
        out["max_folds"] = min(limit, overrides.get("max_folds") or limit)
    return out


def rank_evidence_for(rank_set: dict, *, definition: str = "lora_a", frames: str = "all"):
    """Section 3.4's evidence from rank traces: each rank's top state (the last LoRA layer's A output, or the last
    residual state) under `definition`."""
    from ..analysis.evidence import rank_evidence
    from ..analysis.separability import rank_features, rank_states

    first = next(iter(rank_set.values()))
    top = rank_states(first, definition)[-1]
    features = {r: rank_features(t, top, definition=definition, frames=frames) for r, t in rank_set.items()}
    return rank_evidence(features, first["labels"], first.classes).assign(definition=definition, frames=frames,
                                                                     state=top)


CAUSAL_DEFAULTS = {"smoke": CausalSettings(batch_size=16, random_sets=4, probe_per_class=10),
                   "demo": CausalSettings(batch_size=32, probe_per_class=30),
                   "cpu-real": CausalSettings(batch_size=16, probe_per_class=30),
                   "paper": CausalSettings(batch_size=8, probe_per_class=100)}


def causal_settings(profile: str, *, layer_step: int | None = None, random_sets: int | None = None,
                    probe_per_class: int | None = None) -> CausalSettings:
    """The profile's causal-experiment settings (`CAUSAL_DEFAULTS`) with the chapter parameters given (None: the
    profile's); a value that is not a whole number in range is refused with the parameter's name."""
    given = {"layer_step": layer_step, "random_sets": random_sets, "probe_per_class": probe_per_class}
    for name, value in _clean(given).items():
        if isinstance(value, float) and value.is_integer():
            given[name] = int(value)  # papermill reads `-p causal_layer_step 4.0` as a float
        elif isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"causal_{name}={value!r}: give a whole number")
    return replace(CAUSAL_DEFAULTS.get(profile, CausalSettings()), **_clean(given))


def causal_records(chapter: Chapter, *, seeds=None, settings: CausalSettings | None = None) -> list:
    """The causal experiments of every fold of the main runs (`helpers.analysis.causal`), for `seeds` (None: the
    chapter's first seed, the main run), cached per fold; `settings` None: the profile's (`causal_settings`)."""
    from ..progress import progress

    seeds = (chapter.seeds[0],) if seeds is None else parse_seeds(seeds)
    settings = settings or causal_settings(chapter.profile)
    records = []
    for seed in seeds:
        runs = main_runs(chapter.profile, **_seed_overrides(chapter.profile, seed, chapter.seeds or seeds,
                                                            chapter.overrides))
        for fold_index in progress(range(len(runs["lora"].folds)), desc=f"causal experiments, seed {seed}",
                                   unit="fold"):
            records.append(fold_interventions(runs["lora"], runs["frozen"], fold_index=fold_index,
                                              settings=settings))
    return records


def full_scorecard(chapter: Chapter, *, ranks="8,32,64", definition: str = "lora_a", alpha_rule: str = "scaled",
                   seeds=None, causal: CausalSettings | None = None):
    """Every claim under both frame selections (all frames, as the official code; speech frames only), from the
    chapter's units, the main runs of every seed, the rank runs of the chapter's fold and the causal experiments
    under `causal` (None: the profile's `causal_settings`)."""
    from ..analysis.evidence import (
        causal_evidence,
        cka_evidence,
        contribution_evidence,
        lens_evidence,
        performance_evidence,
        svd_evidence,
    )
    from .results import per_unit_results
    from .scorecard import scorecard

    runs = seed_runs(chapter.profile, seeds if seeds is not None else chapter.seeds, **chapter.overrides)
    rank_set = rank_traces(chapter.profile, ranks, fold=chapter.fold, analysis=chapter.analysis,
                           alpha_rule=alpha_rule, **chapter.overrides)
    both = ("all", "speech")
    evidence = {
        "performance": performance_evidence(per_unit_results(runs)),
        "contributions": [contribution_evidence(chapter.units, frames=f) for f in both],
        "lens": [lens_evidence(chapter.units, frames=f) for f in both],
        "ranks": [rank_evidence_for(rank_set, definition=definition, frames=f) for f in both],
        "svd": [svd_evidence(chapter.units, frames=f) for f in both],
        "cka": [cka_evidence(chapter.units, frames=f) for f in both],
        "causal": causal_evidence(causal_records(chapter, settings=causal)),
    }
    return scorecard(evidence)


VERDICT_COLORS = {"holds": "#d7f0dd", "does not hold": "#f6d6d9", "inconclusive": "#fbefc7",
                  "not testable": "#e4e5e7"}


SCORECARD_PAGE = "scorecard.html"  # the scorecard chapter's page, beside every chapter's page in the book


def claim_anchor(claim_id: str, frames: str = "-") -> str:
    """The HTML id of a claim's row: `claim-<id>`, or `claim-<id>-<frames>` for a claim judged per frame selection
    (the scorecard lists those once per selection)."""
    def slug(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-")

    return f"claim-{slug(claim_id)}" if frames in (None, "", "-") else f"claim-{slug(claim_id)}-{slug(frames)}"


def claims_html(claims, columns=("claim", "frames", "measured", "control", "verdict"), *,
                scorecard_page: str | None = SCORECARD_PAGE) -> str:
    """An HTML table of claims with the verdict cell coloured (green holds, red does not hold, amber
    inconclusive, grey not testable).

    Each row has the id `claim_anchor(id, frames)` and the first row of each claim also `claim-<id>`, so the
    scorecard's rows can be linked to; each claim links to its row on `scorecard_page` (None: no links)."""
    import html

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body, used = [], set()
    has_ids = "id" in claims.columns
    for r in claims.itertuples():
        cells, attrs, anchor = [], "", ""
        if has_ids:
            frames = getattr(r, "frames", "-")
            row_id = base = claim_anchor(r.id, frames)
            n = 1
            while row_id in used:
                n += 1
                row_id = f"{base}-{n}"
            used.add(row_id)
            attrs = f' id="{row_id}"'
            plain = claim_anchor(r.id)
            if plain not in used:  # the claim's first row answers to claim-<id> too
                used.add(plain)
                anchor = f'<span id="{plain}"></span>'
        for c in columns:
            value = html.escape(str(getattr(r, c)))
            style = f' style="background:{VERDICT_COLORS.get(value, "none")}"' if c == "verdict" else ""
            if c == "claim" and has_ids and scorecard_page:
                value = f'<a href="{scorecard_page}#{row_id}" title="this claim in the scorecard">{value}</a>'
            if c == columns[0]:
                value = anchor + value
            cells.append(f"<td{style}>{value}</td>")
        body.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def criteria_markdown(claims) -> str:
    """One line per distinct claim: what the paper reports and the criterion its verdict reads."""
    seen = claims.drop_duplicates("claim")
    return "\n".join(f"- **{r.claim}** (paper: {r.paper}): {r.criterion}." for r in seen.itertuples())


def show_claims(claims, *, section_column: bool = False) -> None:
    """The verdict table (measured value [95% interval], control, verdict; each claim links to its row in the
    scorecard), then each claim's criterion."""
    from IPython.display import HTML, Markdown, display

    columns = ("section",) * section_column + ("claim", "frames", "measured", "control", "verdict")
    display(HTML(claims_html(claims, columns)))
    display(Markdown("**How each verdict is decided.**\n\n" + criteria_markdown(claims)))


def show_settings(**values) -> None:
    """Display the run settings of a chapter as a small table (the injected parameters cell itself is hidden)."""
    import html

    from IPython.display import HTML, display

    rows = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td><code>{html.escape(repr(v))}</code></td></tr>"
                   for k, v in values.items())
    display(HTML(f"<p><strong>Run settings</strong></p><table><tr><th>setting</th><th>value</th></tr>{rows}</table>"))


def show_table(table, *, digits: int = 3) -> None:
    """Display a table in full (pandas would cut long text cells), numbers rounded to `digits`."""
    from IPython.display import HTML, display

    display(HTML(table.round(digits).to_html(index=table.index.name is not None, escape=True)))


def show(fig) -> None:
    """Display a matplotlib Figure as one PNG output (whatever the kernel's backend), then release it."""
    import io

    from IPython.display import Image, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    display(Image(buffer.getvalue()))


def explore(plot: Callable, *, interactive: bool | None = None, **controls) -> None:
    """Widgets over `controls` that redraw `plot(**values)`, or, headless, every combination of the controls'
    values drawn now and offered by controls that work in the static book (`helpers.book.explorer`).

    A control is a list or tuple of values (the first is the default) or one fixed value. `interactive=None` (every
    chapter's default) gives widgets only where a person sees them (a live Jupyter front end,
    `helpers.frontend.live_frontend`) and pre-rendered figures under papermill or nbconvert, where a widget would
    be a dead view; True or False forces one or the other.
    """
    if interactive is None:
        interactive = live_frontend()
    if interactive:
        import ipywidgets

        ipywidgets.interact(lambda **values: show(plot(**values)), **controls)
        return
    from IPython.display import display

    from .explorer import combinations, explorer_bundle, figure_png, options_of, prerender_values

    values = prerender_values(controls)
    figures = combinations(values)
    if len(figures) == 1:  # nothing to choose
        show(plot(**figures[0]))
        return
    pngs = [figure_png(plot(**combo)) for combo in figures]
    display(explorer_bundle(values, pngs, offered=options_of(controls)), raw=True)
