"""Classification scores (UAR, WAR, macro-F1, confusion) and their summary across folds.

Scores are higher-is-better; predictions and targets are integer class indices of shape (n,).
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import confusion_matrix, f1_score, recall_score

__all__ = ["uar", "war", "macro_f1", "confusion", "classification_scores", "summarize_folds"]


def uar(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted average recall: the mean over classes of per-class recall (classes absent from y_true skipped)."""
    present = np.unique(y_true)
    return float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0))


def war(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Weighted average recall, i.e. accuracy."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """F1 averaged over the classes present in y_true or y_pred."""
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, *, n_classes: int) -> np.ndarray:
    """Counts, shape (n_classes, n_classes): row = true class, column = predicted class."""
    return confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))


def classification_scores(y_true, y_pred, *, n_classes: int) -> dict:
    """UAR, WAR, macro-F1 and the confusion matrix (as nested lists, `n_classes` square) in one dict."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return dict(uar=uar(y_true, y_pred), war=war(y_true, y_pred),
                macro_f1=macro_f1(y_true, y_pred),
                confusion=confusion(y_true, y_pred, n_classes=n_classes).tolist())


def summarize_folds(values, *, confidence: float = 0.95) -> dict:
    """Mean, sample std (ddof=1) and a t-based confidence interval of per-fold scores."""
    values = np.asarray(values, dtype=float)
    n = values.size
    mean = float(values.mean()) if n else float("nan")
    std = float(values.std(ddof=1)) if n > 1 else float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / np.sqrt(n)) if n > 1 else float("nan")
    return dict(n=n, mean=mean, std=std, ci_low=mean - half, ci_high=mean + half)
