"""The analysis driver on smoke runs: cached traces and the tables each chapter shows."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from helpers.analysis.tables import cka_tables, contribution_tables, logit_lens_tables, svd_tables
from helpers.book import chapters

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def traces(cache_dir, tiny_en_dir):
    return chapters.main_traces("smoke")


def test_traces_are_cached_and_reused(traces):
    again = chapters.main_traces("smoke")
    for kind in ("lora", "frozen", "untrained-official", "untrained-peft"):
        assert np.array_equal(again[kind]["logits"], traces[kind]["logits"])
    table = traces["analysis_set"]
    assert (table.groupby("label").size() <= 4).all() and len(table) == len(traces["lora"]["labels"])


def test_a_damaged_cached_trace_is_set_aside_and_traced_again(traces, cache_dir, caplog):
    [cached] = [p for p in Path(traces["lora"].meta["run"]).glob(f"{traces['lora'].meta['fold']}/traces/lora-*")
                if ".corrupt-" not in p.name]
    data = cached.read_bytes()
    cached.unlink()
    cached.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="helpers.io"):
        again = chapters.main_traces("smoke")
    assert str(cached) in caplog.text and len(list(cached.parent.glob(f"{cached.name}.corrupt-*"))) == 1
    assert np.array_equal(again["lora"]["logits"], traces["lora"]["logits"])
    assert np.array_equal(again["lora"]["pooled_all"], traces["lora"]["pooled_all"])


def test_contribution_and_lens_tables(traces):
    contributions = contribution_tables(traces)
    n_layers = traces["lora"].n_layers
    assert len(contributions) == 3 * n_layers
    np.testing.assert_allclose(contributions["d_ratio"], contributions["ratio_lora"] - contributions["ratio_frozen"])
    lens = logit_lens_tables(traces, final_norm=True)
    final = lens[lens["depth"] == 1.0]
    assert np.allclose(final["kl"], 0.0, atol=1e-6) and np.allclose(final["overlap"], 1.0)  # float32 KL(p||p)
    with_ln = traces["lora"]["lens.all.ln"]
    np.testing.assert_allclose(with_ln[:, -1], traces["lora"]["logits"], rtol=1e-5, atol=1e-6)


def test_svd_summary_flags_the_peft_baseline(traces):
    _, official = svd_tables(traces, baseline="untrained-official")
    _, peft = svd_tables(traces, baseline="untrained-peft")
    assert not official["degenerate"].any() and (official["ratio"] > 0).all()
    flagged = peft.set_index("kind")["degenerate"]
    assert flagged["B"] and flagged["A_grad"] and not flagged["A"]


def test_cka_table_has_both_directions_and_a_null(traces):
    table = cka_tables(traces["lora"], n_permutations=20)
    assert set(table["direction"]) == {"forward", "backward"}
    assert table["cka"].between(0, 1 + 1e-9).all() and table["null_q95"].notna().all()


def test_controls_are_fresh_untrained_models_traced_like_the_trained_one(traces):
    peft, official = traces["untrained-peft"], traces["untrained-official"]
    assert not official.meta["dropout_active"] and not traces["lora"].meta["dropout_active"]
    name = official.lora_names[0]
    assert np.all(peft[f"{name}.B"] == 0) and np.any(official[f"{name}.B"] != 0)  # peft's B = 0; official N(0, .02)
    assert not np.allclose(official["logits"], traces["lora"]["logits"])  # a fresh head, not the trained one
    np.testing.assert_allclose(traces["lora"]["lens.speech.reference"], traces["lora"]["lens.speech.ln"][:, -1])
    assert traces["lora"][f"{name}.delta_sv"].ndim == 1


def test_forward_alignment_of_an_untrained_adapter_is_not_a_holding_verdict(cache_dir, tiny_en_dir):
    """The issue's must-fail case: put an untrained adapter where the trained one goes; the algebra alone makes its
    forward CKA high, and the verdict must not say the alignment was learned."""
    from dataclasses import replace

    from helpers.analysis.evidence import cka_evidence
    from helpers.analysis.traces import fold_traces
    from helpers.analysis.uncertainty import HOLDS
    from helpers.book.scorecard import section_claims

    units = chapters.main_units("smoke")
    runs = chapters.main_runs("smoke")
    other = replace(chapters.analysis_settings("smoke"), seed=99)
    fake = [{**u, "lora": fold_traces(runs["lora"], runs["frozen"], fold_index=u["fold"], settings=other,
                                      kinds=("untrained-official",))["untrained-official"]} for u in units]
    evidence = cka_evidence(fake, n_boot=50).set_index("quantity")
    assert evidence.loc["forward_cka", "value"] > 0.8  # high without any training
    verdict = section_claims("3.6", evidence.reset_index()).set_index("id").loc["forward_cka_high", "verdict"]
    assert verdict != HOLDS
