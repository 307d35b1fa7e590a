"""Probes and the tuned lens against known answers: separable data, shuffled labels, a state the head already reads,
and a state that is a known linear map of it."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.analysis.probes import fit_tuned_lens, layer_probe_logits, probe_logits, tuned_lens_logits


def _blobs(n: int, d: int, seed: int, spread: float = 0.3):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(4, d)) * 3
    y = rng.integers(0, 4, n)
    return centres[y] + rng.normal(scale=spread, size=(n, d)), y


def test_a_probe_reads_separable_classes_and_not_shuffled_labels():
    x, y = _blobs(400, 16, 0)
    x_test, y_test = _blobs(400, 16, 1)
    assert (probe_logits(x, y, x_test).argmax(1) == y_test).mean() > 0.99
    rng = np.random.default_rng(2)  # labels shuffled in training and test: nothing to learn, chance expected
    predicted = probe_logits(x, rng.permutation(y), x_test).argmax(1)
    assert abs((predicted == rng.permutation(y_test)).mean() - 0.25) < 0.08


def test_layer_probes_score_each_layer_and_mark_classes_missing_from_training():
    x, y = _blobs(200, 8, 0)
    noise = np.random.default_rng(3).normal(size=x.shape)
    states = np.stack([noise, x], 1)  # layer 0 holds nothing, layer 1 the classes
    logits = layer_probe_logits(states, y, states)
    accuracy = (logits.argmax(-1) == y[:, None]).mean(0)
    assert accuracy[1] > 0.99 and accuracy[0] < 0.6
    keep = y < 3
    only_three = probe_logits(x[keep], y[keep], x, n_classes=4)
    assert np.isneginf(only_three[:, 3]).all() and only_three.shape == (len(x), 4)


def _head(d: int = 8, c: int = 4, seed: int = 5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(c, d)), rng.normal(size=c)


def test_the_tuned_lens_on_the_heads_own_input_is_the_raw_lens():
    w, c = _head()
    x, _ = _blobs(300, 8, 0)
    d, e = fit_tuned_lens(x, x @ w.T + c, w, c)
    assert np.abs(d).max() < 1e-6 and np.abs(e).max() < 1e-6
    np.testing.assert_allclose(tuned_lens_logits(x, w, c, d, e), x @ w.T + c, atol=1e-4)


def test_the_tuned_lens_undoes_a_linear_map_the_raw_lens_cannot_read():
    w, c = _head()
    rng = np.random.default_rng(7)
    mix = rng.normal(size=(8, 8))  # the intermediate state is mix @ final state
    x, _ = _blobs(600, 8, 0, spread=1.0)
    x_test, _ = _blobs(600, 8, 1, spread=1.0)
    target, target_test = x @ w.T + c, x_test @ w.T + c
    layer, layer_test = x @ mix.T, x_test @ mix.T
    d, e = fit_tuned_lens(layer, target, w, c, ridge=1e-6)
    tuned = tuned_lens_logits(layer_test, w, c, d, e).argmax(1)
    raw = (layer_test @ w.T + c).argmax(1)
    final = target_test.argmax(1)
    assert (tuned == final).mean() > 0.95
    assert (raw == final).mean() < 0.8


@pytest.mark.parametrize("bad", [np.zeros(10, int)])
def test_a_probe_refuses_a_single_class(bad):
    with pytest.raises(ValueError, match="two or more classes"):
        probe_logits(np.zeros((10, 3)), bad, np.zeros((2, 3)))
