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


# speakers-k: k-fold over speakers for corpora without sessions (RAVDESS-like).
# 24 speakers sp01..sp24; female are the indices i % 3 == 0 plus 1, 4, 7, 10 (12 F, 12 M), chosen so that dealing
# the sorted speakers round-robin while ignoring gender would put 8 F in group 1: only the gender-aware deal gives
# 4F+4M.
FEMALE = {f"sp{i + 1:02d}" for i in range(24) if i % 3 == 0 or i in (1, 4, 7, 10)}
GROUPS_K3 = [("sp01", "sp03", "sp05", "sp10", "sp12", "sp16", "sp17", "sp21"),
             ("sp02", "sp06", "sp07", "sp11", "sp14", "sp18", "sp19", "sp23"),
             ("sp04", "sp08", "sp09", "sp13", "sp15", "sp20", "sp22", "sp24")]


def speakers_table(n_speakers=24, per_speaker=3, gender=True, prefix="sp"):
    rows = [dict(utterance=f"{prefix}{s + 1:02d}_{u}", path="", label=EMOTIONS[u % 4], speaker=f"{prefix}{s + 1:02d}",
                 session="", dialog=f"{prefix}{s + 1:02d}", duration=1.0)
            for s in range(n_speakers) for u in range(per_speaker)]
    table = pd.DataFrame(rows)
    if gender:
        table.attrs["speaker_gender"] = {s: "F" if s in FEMALE else "M" for s in table["speaker"].unique()}
    return table


def test_speakers_k_known_groups_names_and_validation():
    folds = make_folds(speakers_table(), "speakers-k", k=3)
    assert [f.name for f in folds] == ["speakers-k3-g1", "speakers-k3-g2", "speakers-k3-g3"]
    assert [f.test_groups for f in folds] == GROUPS_K3
    # validation: from the next group (cycling), one female and one male, the first of each in sorted order
    assert [f.validation_speakers for f in folds] == [("sp02", "sp06"), ("sp04", "sp09"), ("sp01", "sp03")]
    assert all(f.protocol == "speakers-k" and not f.selection_on_test for f in folds)


def test_speakers_k_splits_are_disjoint_and_cover_every_speaker_once():
    table = speakers_table()
    folds = make_folds(table, "speakers-k", k=3, n_validation=2)
    assert len(folds) == 3
    tested = [s for f in folds for s in f.speakers(table, "test")]
    assert sorted(tested) == sorted(table["speaker"].unique())  # each speaker tested exactly once
    everyone = set(table["speaker"])
    for fold, next_group in zip(folds, GROUPS_K3[1:] + GROUPS_K3[:1]):
        test, val, train = (fold.speakers(table, s) for s in ("test", "validation", "train"))
        assert test == set(fold.test_groups) and val == set(fold.validation_speakers)
        assert not test & val and not test & train and not val & train
        assert train == everyone - test - val and len(train) == 14
        assert not set(fold.train) & set(fold.validation) and not set(fold.train) & set(fold.test)
        assert not set(fold.validation) & set(fold.test)
        assert sorted(fold.train + fold.validation + fold.test) == sorted(table["utterance"])
        assert sum(s in FEMALE for s in test) == 4 and len(test) == 8
        assert len(val) == 2 and sum(s in FEMALE for s in val) == 1 and val <= set(next_group)
    assert len({s for f in folds for s in f.validation_speakers}) == 6  # different speakers validate in each fold


def test_speakers_k_is_deterministic():
    table = speakers_table()
    shuffled = table.sample(frac=1.0, random_state=7).reset_index(drop=True)
    shuffled.attrs["speaker_gender"] = dict(reversed(list(table.attrs["speaker_gender"].items())))
    assert make_folds(table, "speakers-k", k=3) == make_folds(table, "speakers-k", k=3) == \
        make_folds(shuffled, "speakers-k", k=3)


def test_speakers_k_defaults_to_five_groups_of_two_validation_speakers():
    folds = make_folds(speakers_table(), "speakers-k")
    assert [len(f.test_groups) for f in folds] == [5, 5, 5, 5, 4]
    assert [sum(s in FEMALE for s in f.test_groups) for f in folds] == [3, 3, 2, 2, 2]
    assert all(len(f.validation_speakers) == 2 and sum(s in FEMALE for s in f.validation_speakers) == 1
               for f in folds)


def test_speakers_k_without_gender_deals_sorted_speakers_round_robin():
    table = speakers_table(10, gender=False)
    folds = make_folds(table, "speakers-k", k=3)
    assert [f.test_groups for f in folds] == [("sp01", "sp04", "sp07", "sp10"), ("sp02", "sp05", "sp08"),
                                              ("sp03", "sp06", "sp09")]
    assert [f.validation_speakers for f in folds] == [("sp02", "sp05"), ("sp03", "sp06"), ("sp01", "sp04")]
    assert sorted(s for f in folds for s in f.test_groups) == sorted(table["speaker"].unique())


@pytest.mark.parametrize("n_speakers, k", [(10, 3), (24, 5), (11, 4), (7, 2)])
def test_speakers_k_group_sizes_differ_by_at_most_one(n_speakers, k):
    for gender in (True, False):
        sizes = [len(f.test_groups) for f in make_folds(speakers_table(n_speakers, gender=gender), "speakers-k",
                                                        k=k, n_validation=1)]
        assert len(sizes) == k and sum(sizes) == n_speakers and max(sizes) - min(sizes) <= 1


def test_speakers_k_uneven_gendered_split_keeps_each_gender_even():
    table = speakers_table(10, gender=False)  # 5 F (odd numbers), 5 M
    table.attrs["speaker_gender"] = {f"sp{i:02d}": "female" if i % 2 else "male" for i in range(1, 11)}
    folds = make_folds(table, "speakers-k", k=3)
    females = [sum(int(s[2:]) % 2 for s in f.test_groups) for f in folds]
    males = [len(f.test_groups) - n for f, n in zip(folds, females)]
    assert females == [2, 2, 1] and males == [2, 1, 2]
    assert [len(f.test_groups) for f in folds] == [4, 3, 3]


def test_speakers_k_parameters_are_ignored_by_other_protocols():
    table = iemocap_like()
    for protocol in ("speaker", "session", "dialog"):
        assert make_folds(table, protocol, k=99, n_validation=0) == make_folds(table, protocol)


@pytest.mark.parametrize("n_speakers, kwargs, message", [
    (24, dict(k=1), r"k >= 2.*k=1.*set k to 2 or more"),
    (24, dict(k=25), r"k=25.*only 24 speakers.*lower k to at most 24"),
    (24, dict(k=3, n_validation=0), r"n_validation >= 1.*n_validation=0.*set n_validation to 1 or more"),
    (24, dict(k=3, n_validation=9), r"n_validation=9.*smallest group has 8.*lower n_validation to at most 8"),
    (4, dict(k=2, n_validation=2), r"leaves 0 training speakers: 4 speakers - 2 tested \(k=2\) - 2 validating "
                                   r"\(n_validation=2\); lower n_validation or raise k"),
    (24, dict(k=2.5), r"integer k.*k=2.5"),
])
def test_speakers_k_refuses_bad_settings_with_the_fix(n_speakers, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_folds(speakers_table(n_speakers), "speakers-k", **kwargs)


@pytest.mark.parametrize("k", [2, 3, 5, 12])
def test_speakers_k_fold_table_shows_no_test_speaker_in_train(k):
    table = speakers_table()
    folds = make_folds(table, "speakers-k", k=k, n_validation=1)
    report = fold_table(folds, table)
    assert len(report) == k and (report["test_speakers_in_train"] == 0).all()
    assert report["n_test"].sum() == len(table)


def test_fold_tables_say_why_a_protocol_cannot_split_a_corpus():
    from helpers.data.protocols import fold_tables

    two = speakers_table(2)  # two speakers: too few for leave-one-speaker-out with a validation speaker
    table = fold_tables(two, ("dialog", "speaker", "speakers-k"), k=2, n_validation=1)
    assert list(dict.fromkeys(table["protocol"])) == ["dialog", "speaker", "speakers-k"]
    impossible = table[table["fold"] == "(no folds)"]
    assert list(impossible["protocol"]) == ["speaker", "speakers-k"]
    assert "needs at least 3 speakers" in impossible["test"].iloc[0]
    assert (table.loc[table["protocol"] == "dialog", "fold"] != "(no folds)").sum() == 2
