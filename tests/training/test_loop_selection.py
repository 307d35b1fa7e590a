"""Epoch selection: a higher validation score wins; ties go to the lower validation loss unless replicating the
official Trainer, which keeps the earlier epoch."""

from helpers.training.loop import improves


def test_first_epoch_and_higher_score_win():
    assert improves(0.5, 1.0, None, metric="uar", break_ties_by_loss=True)
    best = {"epoch": 1, "uar": 0.5, "loss": 0.3}
    assert improves(0.6, 9.0, best, metric="uar", break_ties_by_loss=False)
    assert not improves(0.4, 0.01, best, metric="uar", break_ties_by_loss=True)


def test_ties_by_loss_or_earlier_epoch():
    best = {"epoch": 1, "uar": 1.0, "loss": 0.4}
    assert improves(1.0, 0.2, best, metric="uar", break_ties_by_loss=True)
    assert not improves(1.0, 0.5, best, metric="uar", break_ties_by_loss=True)
    assert not improves(1.0, 0.2, best, metric="uar", break_ties_by_loss=False)  # the official Trainer's rule
    assert improves(1.0, 0.2, {"epoch": 1, "uar": 1.0}, metric="uar", break_ties_by_loss=True)  # resumed, no loss
