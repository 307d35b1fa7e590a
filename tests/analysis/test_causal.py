"""The causal experiments: their plan, the driver on smoke runs (identities that must hold between experiments),
and verdicts that hold, fail or stay inconclusive on records whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.analysis.causal import ablation_plan, random_layer_sets, top_quarter
from helpers.analysis.evidence import causal_curves, causal_evidence
from helpers.analysis.tracing import Trace
from helpers.analysis.uncertainty import FAILS, HOLDS, INCONCLUSIVE
from helpers.book.scorecard import section_claims


def test_top_quarter_and_random_sets():
    assert [top_quarter(n) for n in (2, 4, 12, 32)] == [1, 1, 3, 8]
    assert random_layer_sets(4, 1, 20) == [(0,), (1,), (2,), (3,)]  # few: every set
    drawn = random_layer_sets(32, 8, 20, seed=1)
    assert len(drawn) == len(set(drawn)) == 20 and all(len(s) == 8 and list(s) == sorted(s) for s in drawn)
    assert drawn == random_layer_sets(32, 8, 20, seed=1) != random_layer_sets(32, 8, 20, seed=2)


def test_ablation_plan_names_every_set():
    plan = ablation_plan(4, ["k_proj", "q_proj"], random_sets=20)
    assert plan["bottom.2"]["layers"] == [0, 1] and plan["top.1"]["layers"] == [3]
    assert plan["proj.q_proj"] == {"layers": [0, 1, 2, 3], "projections": ["q_proj"]}
    assert sum(k.startswith("random.") for k in plan) == 4
    assert not any(k.startswith("proj.") for k in ablation_plan(4, ["q_proj"]))


# ------------------------------------------------------------------------------------------------------------------
# verdicts on constructed records: logits whose argmax is right or wrong on purpose

N_LAYERS, N_CLIPS, N_CLASSES = 4, 24, 4


def _logits(labels: np.ndarray, right: float, rng) -> np.ndarray:
    """Logits whose argmax is the label on a fraction `right` of the clips (the others a wrong class)."""
    hit = rng.random(len(labels)) < right
    pred = np.where(hit, labels, (labels + 1 + rng.integers(0, N_CLASSES - 1, len(labels))) % N_CLASSES)
    out = rng.normal(0, 0.1, (len(labels), N_CLASSES)).astype(np.float32)
    out[np.arange(len(labels)), pred] += 5
    return out


def _record(seed: int, *, top: float, random: float, bottom: float, attn: float, mlp: float,
            control_attn: float = 0.8, control_mlp: float = 0.8) -> Trace:
    """One fold's record: accuracy 0.9 intact; the given accuracies under each intervention."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(N_CLASSES), N_CLIPS // N_CLASSES)
    a = {"labels": labels, "final.lora": _logits(labels, 0.9, rng), "final.frozen": _logits(labels, 0.8, rng),
         "final.untrained": _logits(labels, 0.8, rng)}
    a["ablate.top.1"] = _logits(labels, top, rng)
    a["ablate.bottom.2"] = _logits(labels, bottom, rng)
    a["ablate.bottom.4"] = _logits(labels, 0.3, rng)
    for j in range(4):
        a[f"ablate.random.{j}"] = _logits(labels, random, rng)
    for layer in range(N_LAYERS):
        a[f"patch.frozen>lora.attention.{layer}"] = _logits(labels, attn, rng)
        a[f"patch.frozen>lora.mlp.{layer}"] = _logits(labels, mlp, rng)
        a[f"patch.frozen>untrained.attention.{layer}"] = _logits(labels, control_attn, rng)
        a[f"patch.frozen>untrained.mlp.{layer}"] = _logits(labels, control_mlp, rng)
    for model in ("lora", "frozen"):
        a[f"antialigned.{model}.top.1"] = a[f"final.{model}"].copy()
    a["probe.lora"] = np.stack([_logits(labels, 0.5, rng) for _ in range(N_LAYERS + 1)], 1)
    meta = dict(n_layers=N_LAYERS, top_quarter=1, bottom_half=2)
    return Trace(a, meta)


def _verdicts(**accuracies) -> dict[str, str]:
    records = [_record(s, **accuracies) for s in range(4)]
    return section_claims("causal", causal_evidence(records, n_boot=100)).set_index("id")["verdict"].to_dict()


def test_a_top_heavy_adapter_holds_and_a_bottom_heavy_one_fails():
    holds = _verdicts(top=0.3, random=0.75, bottom=0.85, attn=0.4, mlp=0.85)
    assert holds == {"lora_effect_top_layers_causal": HOLDS, "attention_over_mlp_causal": HOLDS}
    fails = _verdicts(top=0.85, random=0.6, bottom=0.3, attn=0.85, mlp=0.4)
    assert fails == {"lora_effect_top_layers_causal": FAILS, "attention_over_mlp_causal": FAILS}


def test_no_difference_is_inconclusive_and_a_control_with_the_same_asymmetry_blocks_the_claim():
    same = _verdicts(top=0.7, random=0.7, bottom=0.7, attn=0.7, mlp=0.7)
    assert set(same.values()) == {INCONCLUSIVE}
    # attention matters more than the MLP, but just as much for the untrained adapter: not LoRA's doing
    blocked = _verdicts(top=0.3, random=0.75, bottom=0.85, attn=0.4, mlp=0.85, control_attn=0.3, control_mlp=0.8)
    assert blocked["attention_over_mlp_causal"] != HOLDS


def test_curves_read_each_experiment_against_its_own_intact_model():
    records = [_record(s, top=0.3, random=0.75, bottom=0.85, attn=0.4, mlp=0.85) for s in range(3)]
    curves = causal_curves(records, n_boot=50).set_index("key")
    lora = np.mean([(r["final.lora"].argmax(1) == r["labels"]).mean() for r in records])
    assert curves.loc["final.lora", "war"] == pytest.approx(lora)
    assert curves.loc["final.lora", "d_uar"] == 0
    attn = np.mean([(r["patch.frozen>untrained.attention.0"].argmax(1) == r["labels"]).mean()
                    - (r["final.untrained"].argmax(1) == r["labels"]).mean() for r in records])
    assert curves.loc["patch.frozen>untrained.attention.0", "d_uar"] == pytest.approx(attn)  # balanced: UAR = WAR
    probe = curves[curves["experiment"] == "probe"]
    assert list(probe["where"]) == [str(l) for l in range(N_LAYERS + 1)]


# ------------------------------------------------------------------------------------------------------------------
# the driver on the smoke runs


@pytest.fixture(scope="module")
def smoke_records(cache_dir, tiny_en_dir):
    from helpers.book import chapters

    return chapters.causal_records(chapters.setup("smoke"))


@pytest.mark.integration
def test_experiments_that_must_agree_do(smoke_records):
    for r in smoke_records:
        L = r.meta["n_layers"]
        # LoRA off everywhere = the frozen encoder's output under the LoRA head (the frozen run's encoder is the base)
        np.testing.assert_allclose(r[f"ablate.bottom.{L}"], r[f"patch.frozen>lora.residual.{L}"], atol=1e-4)
        np.testing.assert_allclose(r[f"erase.lora.bottom.{L}"], r[f"erase.lora.top.{L}"], atol=1e-5)
        for model in ("lora", "frozen"):  # at the top the lenses read exactly what the head reads
            np.testing.assert_allclose(r[f"lens.{model}"][:, L], r[f"final.{model}"], atol=1e-4)
            np.testing.assert_allclose(r[f"tuned.{model}"][:, L], r[f"final.{model}"], atol=1e-3)
        assert not np.allclose(r["final.lora"], r[f"ablate.bottom.{L}"])  # the adapters do something
        assert r["probe.lora"].shape == (len(r["labels"]), L + 1, 4)


@pytest.mark.integration
def test_records_are_cached_and_the_chapter_tables_and_verdicts_build(smoke_records):
    from helpers.analysis.tables import ablation_table, erasure_table, patching_table, probe_table, with_intervals
    from helpers.book import chapters
    from helpers.book.summaries import causal_summary

    again = chapters.causal_records(chapters.setup("smoke"))
    assert all(np.array_equal(a["final.lora"], b["final.lora"]) for a, b in zip(again, smoke_records))
    curves, evidence = causal_curves(smoke_records, n_boot=20), causal_evidence(smoke_records, n_boot=20)
    ablation = ablation_table(curves, smoke_records[0].meta)
    assert list(ablation["set"][:4]) == ["single.0", "single.1", "single.2", "single.3"] and len(erasure_table(curves))
    shown = with_intervals(ablation)
    assert "uar_low" not in shown and shown["d_uar"].str.match(r"^[+-]\d\.\d{3} \[[+-]").all()
    patching = patching_table(curves, evidence)
    gap = evidence.set_index("quantity").loc["lora_minus_frozen"]
    residual = patching[patching["site"] == "residual"]["gap_recovered"]
    assert residual.isna().all() == (gap["low"] <= 0 <= gap["high"])  # a ratio only where the gap is not 0
    assert set(probe_table(curves)["model"]) == {"lora", "frozen"}
    claims = section_claims("causal", evidence)
    assert len(claims) == 2 and claims["measured"].str.contains(r"\[").all()
    summary = causal_summary(evidence, claims, probe_table(curves))
    assert "**Depth.**" in summary and "nan" not in summary.lower()
    for claim_id in ("lora_effect_top_layers_causal", "attention_over_mlp_causal"):
        assert f"(scorecard.html#claim-{claim_id})" in summary
