"""The causal experiments: their plan, the driver on smoke runs (identities that must hold between experiments),
and verdicts that hold, fail or stay inconclusive on records whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.analysis.causal import (
    CAUSAL_FORMAT,
    CausalSettings,
    ablation_plan,
    bottom_half,
    patch_sites,
    random_layer_sets,
    swept_depths,
    swept_layers,
    top_quarter,
)
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


def test_layer_step_thins_the_sweeps_from_the_top_and_keeps_the_verdicts_sets():
    """At 32 layers, step 4 sweeps layers 3, 7, ..., 31 and k = 4, 8, ..., 32; the top quarter (8), the bottom half
    (16) and every layer (32), which the verdicts read, are always among the k; step 1 is the full sweep."""
    assert swept_layers(32, 1) == tuple(range(32)) and swept_depths(32, 1) == tuple(range(1, 33))
    assert swept_layers(32, 4) == tuple(range(3, 32, 4)) and swept_layers(32, 40) == (31,)
    for n, step in ((32, 4), (32, 5), (32, 40), (12, 5), (4, 3)):
        depths = swept_depths(n, step)
        assert {top_quarter(n), bottom_half(n), n} <= set(depths) and max(depths) == n
        assert swept_layers(n, step)[-1] == n - 1 and len(swept_layers(n, step)) == -(-n // step)
    full, thin = ablation_plan(32, ["q_proj"], random_sets=4), ablation_plan(32, ["q_proj"], random_sets=4,
                                                                            layer_step=4)
    assert set(thin) < set(full) and thin["top.8"] == full["top.8"] and thin["bottom.16"] == full["bottom.16"]
    assert sorted(int(k.split(".")[1]) for k in thin if k.startswith("single.")) == list(swept_layers(32, 4))
    assert sum(k.startswith("random.") for k in thin) == 4 and all(len(thin[k]["layers"]) == 8
                                                                  for k in thin if k.startswith("random."))
    assert patch_sites(32) == patch_sites(32, 1) and len(patch_sites(32)) == 96
    thin_sites = patch_sites(32, 4)
    assert set(thin_sites) < set(patch_sites(32)) and ("residual", 32) in thin_sites and len(thin_sites) == 24
    with pytest.raises(ValueError, match="step"):
        swept_layers(32, 0)


def test_causal_settings_keep_their_cache_key_and_refuse_bad_values():
    """`layer_step` 1 (every layer) leaves the key as it was before the setting existed, so cached records are
    reused; any other step is a different key."""
    from dataclasses import asdict

    from helpers.io import fingerprint

    settings = CausalSettings(batch_size=8, probe_per_class=100)
    before = {k: v for k, v in asdict(settings).items() if k != "layer_step"}
    assert settings.key() == fingerprint({**before, "format": CAUSAL_FORMAT}, length=12)
    assert CausalSettings(layer_step=4).key() != CausalSettings().key()
    for bad in (dict(layer_step=0), dict(random_sets=0), dict(probe_per_class=-1), dict(layer_step=2.5),
                dict(random_sets=True)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            CausalSettings(**bad)


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


def test_verdicts_read_the_swept_layers_only_when_the_sweeps_are_thinned():
    """Records of a thinned sweep (layer_step 2 at 4 layers: patches at layers 1 and 3) give the verdicts from the
    layers patched; a lost layer's keys are not looked for."""
    records = [_record(s, top=0.3, random=0.75, bottom=0.85, attn=0.4, mlp=0.85) for s in range(4)]
    for r in records:
        for key in [k for k in r.arrays if k.startswith("patch.") and int(k.rsplit(".", 1)[1]) not in
                    swept_layers(N_LAYERS, 2)]:
            del r.arrays[key]
    evidence = causal_evidence(records, n_boot=50)
    verdicts = section_claims("causal", evidence).set_index("id")["verdict"].to_dict()
    assert verdicts == {"lora_effect_top_layers_causal": HOLDS, "attention_over_mlp_causal": HOLDS}
    # and the corrupt case: a bottom-heavy adapter patched on two layers still fails
    records = [_record(s, top=0.85, random=0.6, bottom=0.3, attn=0.85, mlp=0.4) for s in range(4)]
    for r in records:
        for key in [k for k in r.arrays if k.startswith("patch.") and k.endswith((".0", ".2"))]:
            del r.arrays[key]
    verdicts = section_claims("causal", causal_evidence(records, n_boot=50)).set_index("id")["verdict"].to_dict()
    assert verdicts == {"lora_effect_top_layers_causal": FAILS, "attention_over_mlp_causal": FAILS}


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
