"""Cross-validation protocols: fold counts, speaker independence, validation speakers, the leaky dialog folds."""

from __future__ import annotations

import pandas as pd
import pytest

from helpers.data.protocols import PROTOCOLS, fold_table, load_folds, make_folds, save_folds
from helpers.labels import EMOTIONS


def iemocap_like(n_sessions=5, per_speaker=4):
    rows = []
    for s in range(1, n_sessions + 1):
        for gender in "FM":
            for k in range(per_speaker):
                lead = "FM"[k % 2]
                rows.append(dict(utterance=f"Ses{s:02d}{lead}_x_{gender}{k:03d}", path="", label=EMOTIONS[k % 4],
                                 speaker=f"Ses{s:02d}{gender}", session=f"Ses{s:02d}", dialog=f"Ses{s:02d}{lead}",
                                 duration=1.0))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("protocol, n_folds", [("speaker", 10), ("session", 5), ("dialog", 10)])
def test_iemocap_fold_counts(protocol, n_folds):
    assert len(make_folds(iemocap_like(), protocol)) == n_folds


@pytest.mark.parametrize("protocol", ["speaker", "session"])
def test_honest_protocols_never_share_speakers(protocol):
    table = iemocap_like()
    for fold in make_folds(table, protocol):
        test, val, train = (fold.speakers(table, s) for s in ("test", "validation", "train"))
        assert test and val and train
        assert not test & train and not test & val and not val & train
        assert not set(fold.test) & set(fold.validation)
        assert len(fold.train) + len(fold.validation) + len(fold.test) == len(table)
        assert not fold.selection_on_test


def test_speaker_protocol_validates_on_the_other_actor_of_the_session():
    table = iemocap_like()
    fold = {f.name: f for f in make_folds(table, "speaker")}["speaker-Ses03M"]
    assert fold.validation_speakers == ("Ses03F",)


def test_dialog_protocol_leaks_speakers_and_selects_on_test():
    table = iemocap_like()
    folds = make_folds(table, "dialog")
    assert all(f.selection_on_test and f.validation == f.test for f in folds)
    assert (fold_table(folds, table)["test_speakers_in_train"] == 2).all()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_folds_are_deterministic_and_round_trip(tmp_path, protocol):
    table = iemocap_like()
    folds = make_folds(table, protocol)
    assert folds == make_folds(table.sample(frac=1.0, random_state=3), protocol)
    assert load_folds(save_folds(folds, tmp_path / "folds.json")) == folds


def test_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="protocol"):
        make_folds(iemocap_like(), "random")
