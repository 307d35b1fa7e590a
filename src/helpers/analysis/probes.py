"""Per-layer linear probes and a tuned lens: is the emotion decodable at layer l, and can the final head read it?

The raw logit lens applies the trained head to an intermediate state as is, so a low score conflates "the emotion
is not there yet" with "it is there in a form the head cannot read". A linear probe (trained on the fold's
training clips) measures the first; a tuned lens (a learned affine map into the head's input, trained to match the
model's final prediction, Belrose et al. 2023) measures how far a state is from what the head reads.

The head of a Whisper classifier is affine, logits = W x + c with W (C, d) of rank <= C, so an affine translator
x -> A x + b before it acts only through W A and W b: the tuned lens is exactly logits = W x + c + D x + e with
D (C, d), e (C,) learned, fitted here with a ridge penalty on (D, e) that pulls it towards the raw lens (D = 0).
Pure functions on arrays; nothing here touches a model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..training.metrics import uar

__all__ = [
    "probe_uar_per_fold",
    "probe_logits",
    "layer_probe_logits",
    "fit_tuned_lens",
    "tuned_lens_logits",
    "layer_tuned_lens_logits",
]


def probe_logits(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, *, c: float = 1.0,
                 n_classes: int | None = None) -> np.ndarray:
    """A multinomial logistic-regression probe on standardised features, trained on (train_x, train_y); its
    decision values on test_x (M, n_classes), classes absent from training scored -inf."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_y = np.asarray(train_y)
    n_classes = int(n_classes or train_y.max() + 1)
    present = np.unique(train_y)
    if len(present) < 2:
        raise ValueError(f"a probe needs two or more classes in training, got {present.tolist()}")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    probe.fit(train_x, train_y)
    scores = probe.decision_function(test_x)
    if scores.ndim == 1:  # two classes: sklearn returns one column
        scores = np.stack([-scores, scores], 1) / 2
    out = np.full((len(test_x), n_classes), -np.inf, dtype=np.float32)
    out[:, present] = scores
    return out


def layer_probe_logits(train_states: np.ndarray, train_y: np.ndarray, test_states: np.ndarray, *,
                       c: float = 1.0, n_classes: int | None = None) -> np.ndarray:
    """`probe_logits` at every layer: states (N, L+1, d) -> test decision values (M, L+1, C)."""
    return np.stack([probe_logits(train_states[:, l], train_y, test_states[:, l], c=c, n_classes=n_classes)
                     for l in range(train_states.shape[1])], 1)


def fit_tuned_lens(states: np.ndarray, target_logits: np.ndarray, head_weight: np.ndarray, head_bias: np.ndarray,
                   *, ridge: float = 1e-2, max_iter: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(D, e) minimising mean KL(softmax(target) || softmax(W x + c + D x + e)) + ridge (|D|^2 + |e|^2) over the
    rows x of `states` (N, d); W, c is the head (`head_weight` (C, d), `head_bias` (C,)). Starts at the raw lens
    (D = 0, e = 0), so a state the head already reads exactly stays there."""
    x = torch.as_tensor(states, dtype=torch.float64)
    target = torch.log_softmax(torch.as_tensor(target_logits, dtype=torch.float64), -1)
    w = torch.as_tensor(head_weight, dtype=torch.float64)
    c = torch.as_tensor(head_bias, dtype=torch.float64)
    scale = x.norm(dim=1).mean().clamp_min(1e-12)  # the penalty is on D in units of a typical state's norm
    d = torch.zeros(w.shape, dtype=torch.float64, requires_grad=True)
    e = torch.zeros(c.shape, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([d, e], max_iter=max_iter, line_search_fn="strong_wolfe")

    def loss_fn():
        optimiser.zero_grad()
        log_q = torch.log_softmax(x @ (w + d).T + c + e, -1)
        kl = (target.exp() * (target - log_q)).sum(-1).mean()
        loss = kl + ridge * ((d * scale).pow(2).sum() + e.pow(2).sum())
        loss.backward()
        return loss

    optimiser.step(loss_fn)
    return d.detach().numpy(), e.detach().numpy()


def tuned_lens_logits(states: np.ndarray, head_weight: np.ndarray, head_bias: np.ndarray, d: np.ndarray,
                      e: np.ndarray) -> np.ndarray:
    """The tuned lens's logits W x + c + D x + e for states (M, d)."""
    return (np.asarray(states, np.float64) @ (head_weight + d).T + head_bias + e).astype(np.float32)


def layer_tuned_lens_logits(train_states: np.ndarray, train_final_logits: np.ndarray, test_states: np.ndarray,
                            head_weight: np.ndarray, head_bias: np.ndarray, *, ridge: float = 1e-2) -> np.ndarray:
    """A tuned lens per layer, fitted on the training clips' states (N, L+1, d) against the model's own final
    logits there (N, C); its logits on the test states (M, L+1, C)."""
    out = []
    for l in range(train_states.shape[1]):
        d, e = fit_tuned_lens(train_states[:, l], train_final_logits, head_weight, head_bias, ridge=ridge)
        out.append(tuned_lens_logits(test_states[:, l], head_weight, head_bias, d, e))
    return np.stack(out, 1)


def probe_uar_per_fold(features: np.ndarray, labels: np.ndarray,
                     folds: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Test UAR per fold of a logistic regression on standardised `features` (N, F), trained on each fold's
    training rows and scored on its test rows (`folds`: pairs of index arrays); rows with a NaN are left out of
    training and predicted as the training set's most frequent class (so they count, as errors if wrong)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
    finite = np.isfinite(features).all(axis=1)
    scores = []
    for train, test in folds:
        train = train[finite[train]]
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit(features[train], labels[train])
        fallback = pd.Series(labels[train]).mode()[0]
        predicted = np.full(len(test), fallback, dtype=object)
        ok = finite[test]
        if ok.any():
            predicted[ok] = model.predict(features[test][ok])
        scores.append(uar(labels[test].astype(str), predicted.astype(str)))
    return np.array(scores)
