"""Classes from the settings or the data (issue 17): which corpus rows a run keeps, in which class order, and that
runs of other classes never share a run directory (fast: tiny synthetic files, no model)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from helpers.config import make_config
from helpers.data.corpora import CorpusError, left_out_table
from helpers.io import fingerprint
from helpers.labels import EMOTIONS
from helpers.training import runs
from helpers.training.device import TRAINING_FORMAT, library_versions
from helpers.training.runs import corpus_classes, load_corpus, run_dir_for

SIX = ("anger", "happiness", "neutral", "sadness", "fear", "disgust")


def _manifest(folder, labels_per_speaker: dict[str, list[str]]):
    """A CSV manifest with one 0.5 s noise clip per (speaker, label) entry."""
    rng = np.random.default_rng(0)
    rows = []
    for speaker, labels in labels_per_speaker.items():
        for i, label in enumerate(labels):
            path = folder / "wav" / f"{speaker}_{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, 0.1 * rng.standard_normal(8000).astype(np.float32), 16000)
            rows.append(dict(path=f"wav/{path.name}", label=label, speaker=speaker))
    csv = folder / "corpus.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


@pytest.fixture
def manifest(tmp_path):
    labels = ["ang", "hap", "exc", "neu", "sad", "fea", "dis", "oth"]
    return _manifest(tmp_path, {f"S{s}": labels for s in range(3)})


def test_manifest_with_a_label_map_keeps_the_config_order_and_counts_what_was_dropped(manifest):
    config = make_config("smoke", data=str(manifest), classes="sadness,anger,happiness",
                         label_map="sad=sadness,ang=anger,hap=happiness,exc=happiness")
    table = load_corpus(config)
    assert corpus_classes(table) == ("sadness", "anger", "happiness")  # the config's order: the model's outputs
    assert table["label"].value_counts().to_dict() == {"happiness": 6, "sadness": 3, "anger": 3}
    assert table.attrs["dropped_labels"] == {"neu": 3, "fea": 3, "dis": 3, "oth": 3}
    assert table.attrs["label_map"] == {"sad": "sadness", "ang": "anger", "hap": "happiness", "exc": "happiness"}
    left = left_out_table(table)
    assert left["count"].sum() == 12 and left["left_out"].all()
    assert "label 'oth' not mapped to a class (dropped)" in set(left["what"])


def test_classes_all_with_a_map_takes_its_targets_in_order(manifest):
    table = load_corpus(make_config("smoke", data=f"manifest:{manifest}", classes="all",
                                    label_map="fea=fear,dis=disgust,neu=neutral"))
    assert corpus_classes(table) == ("fear", "disgust", "neutral") and len(table) == 9


def test_classes_all_without_a_map_is_every_label_of_the_manifest(manifest):
    table = load_corpus(make_config("smoke", data=str(manifest), classes="all"))
    assert corpus_classes(table) == ("ang", "dis", "exc", "fea", "hap", "neu", "oth", "sad")  # the reader's order
    assert table.attrs["classes_without_clips"] == [] and left_out_table(table).empty


def test_a_listed_class_without_clips_is_an_error_naming_it(manifest):
    config = make_config("smoke", data=str(manifest), classes="anger,fear", label_map="ang=anger,xyz=fear")
    with pytest.raises(CorpusError, match=r"classes \['fear'\] have no usable clip.*leave them out of classes"):
        load_corpus(config)


def test_unusable_audio_skipped_is_listed_as_left_out(tmp_path):
    csv = _manifest(tmp_path, {"A": ["x", "y"], "B": ["x", "y"], "C": ["x", "y"]})
    (tmp_path / "wav" / "A_0.wav").write_text("not audio")
    table = load_corpus(make_config("smoke", data=str(csv), classes="x,y", on_bad="skip"))
    assert len(table) == 5
    left = left_out_table(table)
    assert left.loc[0, "what"] == "unusable audio (left out, on_bad='skip')" and left.loc[0, "count"] == 1
    assert "A_0.wav" in left.loc[0, "detail"]


def test_demo_corpus_synthesises_the_classes_asked_for(tmp_path):
    table = load_corpus(make_config("smoke", classes=",".join(SIX)), cache_dir=tmp_path)
    assert corpus_classes(table) == SIX
    assert table.groupby("label").size().to_dict() == {c: 4 * 2 for c in SIX}  # 4 speakers x 2 clips
    assert left_out_table(table).empty and table.attrs["label_map"] == {c: c for c in SIX}
    every = load_corpus(make_config("smoke", classes="all"), cache_dir=tmp_path)
    assert corpus_classes(every) == SIX  # the demo's every class: the four and the two extra
    with pytest.raises(CorpusError, match="cannot synthesise \\['joy'\\].*choose classes among"):
        load_corpus(make_config("smoke", classes="anger,joy"), cache_dir=tmp_path)


def test_default_classes_keep_the_run_directories_cached_runs_have(tmp_path):
    """The default run's hash is over the settings every run had before classes existed (known answer: the old
    formula), so its cached folds stay valid; any other class setting gets a directory of its own."""
    config = make_config("smoke")
    legacy = {k: v for k, v in asdict(config).items()
              if k not in ("profile", "allow_download", "max_folds", "device", "classes", "label_map", "folds_k",
                           "validation_speakers", "level", "fit_seconds_cap", "pooling")}  # settings added since
    key = fingerprint([legacy, "data", "cpu", library_versions(), TRAINING_FORMAT])
    assert run_dir_for(config, "data", cache_dir=tmp_path, device_type="cpu") == \
        tmp_path / "runs" / f"lora-speaker-{key}"

    def where(**overrides):
        config = make_config("smoke", **overrides)
        return run_dir_for(config, "data", cache_dir=tmp_path, device_type="cpu",
                           classes=SIX if config.every_class else None)

    default = where()
    assert where(classes=",".join(EMOTIONS)) == default
    assert where(folds_k=3) == default  # k only shapes speakers-k folds
    assert where(pooling="mean") == default
    others = [where(classes=",".join(SIX)), where(classes="sadness,neutral,happiness,anger"),
              where(data="c.csv", label_map="a=anger,h=happiness,n=neutral,s=sadness"),
              where(protocol="speakers-k"), where(protocol="speakers-k", folds_k=3),
              where(protocol="speakers-k", validation_speakers=1), where(pooling="speech")]
    assert len({default, *others}) == 1 + len(others)
    assert where(classes="all") == others[0]  # "all" is hashed as the classes it resolved to
    with pytest.raises(ValueError, match="pass the resolved classes"):
        run_dir_for(make_config("smoke", classes="all"), "data", cache_dir=tmp_path, device_type="cpu")


def test_a_run_prepared_with_six_classes_records_them(tmp_path):
    run = runs.prepare_run(make_config("smoke", classes=",".join(SIX)), cache_dir=tmp_path, device_type="cpu")
    assert run.classes == SIX
    info = pd.read_json(run.run_dir / "run.json", typ="series")
    assert list(info["classes"]) == list(SIX) and info["corpus"] == "demo"
    assert runs._run_classes(run.run_dir) == SIX


def test_protocols_a_two_speaker_corpus_cannot_use_are_named_with_the_reason(tmp_path):
    from helpers.book.chapters import unsplittable_protocols

    csv = _manifest(tmp_path, {"A": ["x", "y"] * 2, "B": ["x", "y"] * 2})  # TESS-like: two speakers
    why = unsplittable_protocols("smoke", ("dialog", "speaker", "speakers-k"), data=str(csv), classes="x,y",
                                 protocol="dialog")
    assert set(why) == {"speaker", "speakers-k"} and "needs at least 3 speakers" in why["speaker"]
