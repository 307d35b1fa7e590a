"""Analysis functions against known answers (pure arrays, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.analysis.cka import cka, cka_permutation_null
from helpers.analysis.contributions import contribution_difference, frame_mean, relative_contributions
from helpers.analysis.logit_lens import kl_divergence, log_softmax, logit_lens_table
from helpers.analysis.separability import knn_uar, silhouette_by_class
from helpers.analysis.spectra import k90_summary, k_energy, singular_values

rng = np.random.default_rng(0)


@pytest.mark.parametrize("kernel, debiased", [("linear", False), ("linear", True), ("rbf", False), ("rbf", True)])
def test_cka_of_a_representation_with_itself_is_one(kernel, debiased):
    x = rng.standard_normal((60, 10))
    assert cka(x, x, kernel=kernel, debiased=debiased) == pytest.approx(1.0)


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_is_invariant_to_rotation_and_isotropic_scaling(debiased):
    x = rng.standard_normal((50, 8))
    q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    y = rng.standard_normal((50, 5)) + x[:, :5]
    assert cka(x, x @ q, debiased=debiased) == pytest.approx(1.0)
    assert cka(x @ q * 7.5, y, debiased=debiased) == pytest.approx(cka(x, y, debiased=debiased))


def test_rbf_cka_is_invariant_to_rotation_and_scaling():
    x = rng.standard_normal((40, 6))
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    assert cka(x, 3.0 * x @ q, kernel="rbf") == pytest.approx(1.0)


def test_independent_data_debiased_cka_near_zero_biased_positive():
    x, y = rng.standard_normal((300, 40)), rng.standard_normal((300, 40))
    assert abs(cka(x, y, debiased=True)) < 0.05
    biased = cka(x, y)
    assert 0.0 < biased < 1.0 and biased > abs(cka(x, y, debiased=True))


def test_biased_linear_cka_is_never_negative_but_debiased_can_be():
    values_b, values_d = [], []
    for seed in range(30):
        r = np.random.default_rng(seed)
        x, y = r.standard_normal((12, 3)), r.standard_normal((12, 3))
        values_b.append(cka(x, y))
        values_d.append(cka(x, y, debiased=True))
    assert min(values_b) >= 0.0
    assert min(values_d) < 0.0


def test_permutation_null_is_centred_near_zero_for_debiased_cka():
    x = rng.standard_normal((80, 6))
    y = x @ rng.standard_normal((6, 4)) + 0.1 * rng.standard_normal((80, 4))
    null = cka_permutation_null(x, y, debiased=True, n_permutations=100)
    assert abs(null.mean()) < 0.05 and cka(x, y, debiased=True) > np.quantile(null, 0.99)


def test_k90_of_a_constructed_spectrum():
    assert k_energy(np.array([3.0, 2.0, 1.0, 0.0])) == 2  # energy 9, 13, 14 of 14: 0.64, 0.93
    assert k_energy(np.array([1.0, 0.0, 0.0])) == 1
    assert k_energy(np.ones(10)) == 9  # 9/10 reaches 0.9 exactly
    assert np.isnan(k_energy(np.zeros(5)))


def test_singular_values_of_a_rank_two_matrix():
    u, _ = np.linalg.qr(rng.standard_normal((30, 2)))
    v, _ = np.linalg.qr(rng.standard_normal((7, 2)))
    sv = singular_values(u @ np.diag([5.0, 2.0]) @ v.T)
    np.testing.assert_allclose(sv[:2], [5.0, 2.0], atol=1e-10)
    assert np.all(sv[2:] < 1e-10) and k_energy(sv) == 2


def test_k90_summary_flags_a_degenerate_baseline():
    import pandas as pd

    trained = pd.DataFrame(dict(kind=["B"] * 2, k=[2.0, 4.0]))
    zero = pd.DataFrame(dict(kind=["B"] * 2, k=[np.nan, np.nan]))
    assert k90_summary(trained, pd.DataFrame(dict(kind=["B"] * 2, k=[6.0, 12.0])))["ratio"] == pytest.approx(3.0)
    summary = k90_summary(trained, zero)
    assert summary["degenerate"] and np.isnan(summary["ratio"])


def test_kl_of_a_distribution_with_itself_is_zero_and_positive_otherwise():
    logits = rng.standard_normal((5, 4))
    lp = log_softmax(logits)
    np.testing.assert_allclose(kl_divergence(lp, lp), 0.0, atol=1e-12)
    other = log_softmax(rng.standard_normal((5, 4)))
    assert np.all(kl_divergence(lp, other) > 0)
    p, q = np.exp(lp[0]), np.exp(other[0])
    assert kl_divergence(lp[0], other[0]) == pytest.approx(np.sum(p * np.log(p / q)))


def test_logit_lens_table_final_layer_agrees_with_itself_and_directions_differ():
    logits = rng.standard_normal((20, 5, 4))
    paper = logit_lens_table(logits)
    official = logit_lens_table(logits, direction="official")
    assert paper["kl"].iloc[-1] == pytest.approx(0.0) and paper["overlap"].iloc[-1] == 1.0
    assert not np.allclose(paper["kl"].iloc[:-1], official["kl"].iloc[:-1])
    assert list(paper["depth"]) == [0, 0.25, 0.5, 0.75, 1.0]


def _toy_trace(n=4, layers=3, t=10, speech=6):
    h = rng.standard_normal((n, layers, t, 8))
    a, m = 2.0 * h, -0.5 * h  # a along h, m against it
    norm = lambda x: np.linalg.norm(x, axis=-1)  # noqa: E731
    cos = lambda x: np.sum(x * h, -1) / (norm(x) * norm(h))  # noqa: E731
    mask = np.zeros((n, t), bool)
    mask[:, :speech] = True
    return dict(h_norm=norm(h), a_norm=norm(a), m_norm=norm(m), am_norm=norm(a + m), cos_ah=cos(a), cos_mh=cos(m),
                cos_amh=cos(a + m), speech_mask=mask)


@pytest.mark.parametrize("frames", ["all", "speech"])
def test_relative_contributions_known_ratios_and_cosines(frames):
    table = relative_contributions(_toy_trace(), frames=frames).set_index(["component", "layer"])
    assert table.loc[("attention", 0), "ratio"] == pytest.approx(2.0)
    assert table.loc[("mlp", 2), "ratio"] == pytest.approx(0.5)
    assert table.loc[("attention+mlp", 1), "ratio"] == pytest.approx(1.5)
    assert table.loc[("attention", 1), "cosine"] == pytest.approx(1.0)
    assert table.loc[("mlp", 1), "cosine"] == pytest.approx(-1.0)


def test_frame_mean_uses_only_masked_frames():
    values = np.zeros((2, 1, 4))
    values[:, :, 2:] = 100.0
    mask = np.array([[True, True, False, False]] * 2)
    assert frame_mean(values, mask)[0] == 0.0
    assert frame_mean(values, np.ones_like(mask))[0] == 50.0


def test_contribution_difference_is_lora_minus_frozen():
    lora = relative_contributions(_toy_trace())
    frozen = lora.assign(ratio=lora["ratio"] - 0.25, cosine=lora["cosine"] + 0.1)
    diff = contribution_difference(lora, frozen)
    np.testing.assert_allclose(diff["d_ratio"], 0.25)
    np.testing.assert_allclose(diff["d_cosine"], -0.1)


def test_separated_clusters_score_high_and_noise_scores_near_chance():
    labels = np.repeat(np.arange(4), 15)
    centres = rng.standard_normal((4, 10)) * 10
    x = centres[labels] + rng.standard_normal((60, 10))
    sil = silhouette_by_class(x, labels)
    assert sil["all"] > 0.7 and knn_uar(x, labels) == 1.0
    noise = rng.standard_normal((60, 10))
    assert silhouette_by_class(noise, labels)["all"] < 0.1 and knn_uar(noise, labels) < 0.6


def test_separability_of_one_clip_per_class_is_undefined_not_an_error():
    """A paper rehearsal's fold holds one clip per class: silhouette and kNN UAR are NaN there, and the table of
    every layer is still made (sklearn refuses a silhouette with as many classes as clips)."""
    from helpers.analysis.separability import separability_table

    labels = np.arange(4)
    sil = silhouette_by_class(rng.standard_normal((4, 3)), labels)
    assert set(sil) == {"all", "0", "1", "2", "3"} and all(np.isnan(v) for v in sil.values())
    table = separability_table(rng.standard_normal((4, 33, 3)), labels, ["a", "b", "c", "d"], rank=32)
    assert len(table) == 33 and table["silhouette_all"].isna().all() and table["knn_uar"].isna().all()
    two_each = np.repeat(np.arange(4), 2)
    assert not np.isnan(silhouette_by_class(rng.standard_normal((8, 3)), two_each)["all"])
