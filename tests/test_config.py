"""helpers.config and the CLI generated from it: profiles, overrides, help text for every setting."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from helpers.config import PROFILES, RunConfig, make_config, setting_from_text, setting_help, settings_table
from helpers.models.lora import ATTENTION_PROJECTIONS, LoraSettings

ROOT = Path(__file__).resolve().parents[1]


def test_profiles_and_overrides():
    assert PROFILES["paper"].model == "openai/whisper-large-v2" and PROFILES["paper"].protocol == "dialog"
    assert (PROFILES["paper"].lr, PROFILES["paper"].epochs, PROFILES["paper"].rank) == (5e-5, 20, 32)
    config = make_config("demo", epochs=2, target_modules="attention")
    assert config.epochs == 2 and config.target_modules == ATTENTION_PROJECTIONS
    with pytest.raises(ValueError, match="unknown setting"):
        make_config("demo", epoch=2)
    with pytest.raises(ValueError, match="protocol"):
        make_config("demo", protocol="random")
    with pytest.raises(ValueError, match="profile"):
        make_config("huge")
    assert make_config("demo", target_modules="q_proj,v_proj").target_modules == ("q_proj", "v_proj")


def test_lora_defaults_come_from_lora_settings():
    config, lora = RunConfig(), LoraSettings()
    assert (config.rank, config.alpha, config.dropout, config.target_modules) == (
        lora.rank, lora.alpha, lora.dropout, lora.target_modules)


def test_every_setting_has_help_and_the_cli_explains_every_flag():
    result = subprocess.run([sys.executable, "-m", "helpers", "train", "--help"], capture_output=True, text=True,
                            check=True)
    text = " ".join(result.stdout.split())
    for f in fields(RunConfig):
        assert f.metadata["help"], f.name
        if f.name != "profile":
            assert f"--{f.name.replace('_', '-')}" in text
            assert " ".join(f.metadata["help"].split())[:40] in text, f.name


def test_cli_booleans_are_strict():
    result = subprocess.run([sys.executable, "-m", "helpers", "train", "--compile", "ture"], capture_output=True,
                            text=True)
    assert result.returncode == 2 and "not a boolean" in result.stderr


def test_the_readme_settings_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- settings-table -->\n(.*?)\n<!-- /settings-table -->", readme, re.S)
    assert block, "README.md lacks the <!-- settings-table --> block"
    assert block.group(1).strip() == settings_table().strip(), \
        "README settings table is stale: paste `python -m helpers settings` between the markers"


# ------------------------------------------------------------------------------------------------------------------
# classes, label_map and the speakers-k settings (issue 17): parsed the same from Python, the CLI and papermill


SIX = ("anger", "happiness", "neutral", "sadness", "fear", "disgust")


def test_classes_default_is_the_papers_four_and_parse_from_text_or_lists():
    from helpers.labels import EMOTIONS

    assert RunConfig().classes == EMOTIONS == ("anger", "happiness", "neutral", "sadness")
    assert make_config("demo", classes="fear, anger,sadness").classes == ("fear", "anger", "sadness")  # order kept
    assert make_config("demo", classes=["anger", "fear"]).classes == ("anger", "fear")
    assert make_config("demo", classes="all").classes == ("all",) and make_config("demo", classes="all").every_class
    assert not make_config("demo").every_class


@pytest.mark.parametrize("value, words", [
    ("", "names no class"), ("anger", "at least two classes"), ("anger,fear,anger", "repeats ['anger']"),
    ("all,anger", "'all' stands alone"),
])
def test_bad_classes_name_the_setting_and_the_fix(value, words):
    with pytest.raises(ValueError, match=r"RunConfig\.classes") as err:
        make_config("demo", classes=value)
    assert words in str(err.value)


def test_label_map_parses_pairs_dicts_and_json_lists_to_one_form():
    expected = (("neu", "neutral"), ("ang", "anger"))
    iemocap = dict(data="iemocap:/data/IEMOCAP_full_release", classes="neutral,anger")
    assert make_config("paper", label_map="neu=neutral, ang=anger", **iemocap).label_map == expected
    assert make_config("paper", label_map={"neu": "neutral", "ang": "anger"}, **iemocap).label_map == expected
    assert make_config("paper", label_map=[["neu", "neutral"], ["ang", "anger"]], **iemocap).label_map == expected
    assert make_config("paper", label_map="", data="x.csv").label_map is None
    assert RunConfig().label_map is None
    # many raw labels onto one class, and classes=all takes the map's targets later
    merged = make_config("paper", data="x.csv", classes="happiness,neutral", label_map="hap=happiness,exc=happiness,"
                                                                                     "neu=neutral")
    assert dict(merged.label_map) == {"hap": "happiness", "exc": "happiness", "neu": "neutral"}
    assert make_config("paper", data="x.csv", classes="all", label_map="a=x,b=y").label_map == (("a", "x"),
                                                                                             ("b", "y"))


@pytest.mark.parametrize("overrides, words", [
    (dict(label_map="neu"), "item 'neu' is not raw=class"),
    (dict(label_map="neu=neutral=x"), "is not raw=class"),
    (dict(label_map="=neutral"), "has an empty side"),
    (dict(label_map="neu=neutral,neu=anger"), "maps ['neu'] more than once"),
    (dict(label_map="neu=neutral,ang=anger,hap=happiness,sad=sadness,fea=fear"),
     "maps fea=fear, but classes=anger,happiness,neutral,sadness; add those classes to classes"),
    (dict(label_map="neu=neutral,ang=anger"), "classes lists ['happiness', 'sadness'], but label_map maps no label"),
    (dict(label_map=42), "give raw=class pairs"),
])
def test_bad_label_maps_name_the_setting_and_the_fix(overrides, words):
    with pytest.raises(ValueError, match=r"RunConfig\.(label_map|classes)") as err:
        make_config("paper", data="corpus.csv", **overrides)
    assert words in str(err.value)


def test_a_label_map_for_the_demo_corpus_is_refused_with_the_alternative():
    with pytest.raises(ValueError, match="label_map applies to corpora read from disk.*set classes"):
        make_config("demo", label_map="a=anger")


@pytest.mark.parametrize("field, value", [("folds_k", 1), ("folds_k", "three"), ("folds_k", True),
                                          ("validation_speakers", 0), ("validation_speakers", 1.5)])
def test_speakers_k_settings_are_whole_numbers_in_range(field, value):
    with pytest.raises(ValueError, match=f"RunConfig.{field}"):
        make_config("demo", **{field: value})
    assert (RunConfig().folds_k, RunConfig().validation_speakers) == (5, 2)


def test_cli_parses_classes_label_map_and_k_and_refuses_bad_ones_by_name(monkeypatch):
    from helpers import __main__ as cli

    seen = {}
    monkeypatch.setattr(cli, "_settings_ok", lambda profile, overrides: seen.update(overrides) or False)
    assert cli.main(["train", "--profile", "smoke", "--classes", ",".join(SIX), "--label-map", "",
                     "--protocol", "speakers-k", "--folds-k", "3", "--validation-speakers", "1"]) == 2
    config = make_config("smoke", **seen)
    assert config.classes == SIX and config.label_map is None
    assert (config.protocol, config.folds_k, config.validation_speakers) == ("speakers-k", 3, 1)
    result = subprocess.run([sys.executable, "-m", "helpers", "train", "--profile", "smoke", "--data", "c.csv",
                             "--label-map", "neu=neutral,fea=fear"], capture_output=True, text=True)
    assert result.returncode == 2 and "error: RunConfig.label_map maps fea=fear" in result.stderr
    assert "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "helpers", "train", "--folds-k", "two"], capture_output=True,
                            text=True)
    assert result.returncode == 2 and "--folds-k" in result.stderr


def test_papermill_and_the_book_driver_pass_values_run_configs_read(monkeypatch):
    """What `papermill -p NAME VALUE` and `python -m helpers.book -p NAME VALUE` hand a chapter becomes the same
    RunConfig as the Python values."""
    import json

    import papermill.cli
    from click.testing import CliRunner

    seen = {}
    monkeypatch.setattr(papermill.cli, "execute_notebook", lambda **kwargs: seen.update(kwargs))
    words = ["in.ipynb", "out.ipynb", "-p", "classes", ",".join(SIX), "-p", "label_map", "neu=neutral,ang=anger",
             "-p", "folds_k", "3", "-p", "validation_speakers", "1", "-p", "data", "iemocap:/data/iemocap"]
    assert CliRunner().invoke(papermill.cli.papermill, words).exit_code == 0
    passed = seen["parameters"]
    assert passed["folds_k"] == 3 and passed["classes"] == ",".join(SIX)
    with pytest.raises(ValueError, match="maps no label"):
        make_config("demo", **passed)  # happiness, sadness, fear, disgust are reached by no raw label
    passed["label_map"] = "neu=neutral,ang=anger,hap=happiness,sad=sadness,fea=fear,dis=disgust"
    config = make_config("demo", **passed)
    assert config.classes == SIX and config.label_map[-1] == ("dis", "disgust") and config.folds_k == 3

    def book_reads(text):  # helpers.book's -p: JSON where it parses, else the text
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    assert make_config("demo", classes=book_reads("all"), folds_k=book_reads("4")).folds_k == 4
    assert make_config("demo", classes=book_reads("anger,fear")).classes == ("anger", "fear")


def test_run_config_json_round_trip_keeps_classes_and_label_map():
    import json

    config = make_config("paper", data="c.csv", classes="neutral,anger", label_map="neu=neutral,ang=anger")
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(config.to_json()).items()}
    assert RunConfig(**data) == config  # how RunResults.read rebuilds it


# ------------------------------------------------------------------------------------------------------------------
# Settings typed once (issue 20): Python, the CLI and papermill go through one validation, before any work starts


BAD_SETTINGS = [  # (setting, value as Python or papermill hands it, what the refusal says)
    ("epochs", 2.5, "is not a whole number"), ("epochs", "2.5", "is not a whole number"),
    ("seed", "abc", "is not a whole number"), ("max_folds", -1, "is out of range"),
    ("max_folds", "-1", "is out of range"), ("max_folds", 1.5, "is not a whole number"),
    ("batch_size", 0, "is out of range"), ("demo_clips", 0, "is out of range"), ("seed", -3, "is out of range"),
    ("max_seconds", 31, "is out of range"), ("lr", 0, "is out of range"), ("lr", "fast", "is not a number"),
    ("lr", float("nan"), "is not a number"), ("epochs", True, "is not a whole number"),
    ("compile", "ture", "is not a boolean"), ("tf32", "flase", "is not a boolean"), ("tf32", "on", "is not a boolean"),
    ("compile", 2, "is not a boolean"),
]


@pytest.mark.parametrize("name, value, words", BAD_SETTINGS)
def test_bad_settings_are_refused_naming_the_setting_the_value_and_the_fix(name, value, words):
    from helpers.errors import ConfigError, UserError

    with pytest.raises(ConfigError) as err:
        make_config("smoke", **{name: value})
    message = str(err.value)
    assert message.startswith(f"RunConfig.{name}={value!r} {words}; give "), message
    assert setting_help(name)[:30] in message  # the fix says what the setting means
    assert isinstance(err.value, UserError) and isinstance(err.value, ValueError)


def test_settings_given_as_text_are_typed_like_python_values():
    config = make_config("smoke", epochs="3", seed=" 7", max_folds=3.0, compile="TRUE", tf32="no", lr="1e-3",
                         allow_download=1, dropout=0)
    assert (config.epochs, config.seed, config.max_folds) == (3, 7, 3)
    assert all(type(v) is int for v in (config.epochs, config.seed, config.max_folds))
    assert (config.compile, config.tf32, config.allow_download) == (True, False, True)
    assert config.lr == 1e-3 and type(config.dropout) is float
    assert config == make_config("smoke", epochs=3, seed=7, max_folds=3, compile=True, tf32=False, lr=1e-3,
                                 allow_download=True, dropout=0.0)
    for text, value in (("yes", True), ("No", False), ("1", True), ("0", False), ("False", False)):
        assert setting_from_text("compile", text) is value
    assert setting_from_text("model", " tiny.en") == " tiny.en"  # text settings are their fields' to parse


def test_papermill_parameters_are_refused_before_any_work(monkeypatch):
    """`papermill -p epochs 2.5` etc. reach the chapter's `setup` (make_config) as papermill types them: each is
    refused there, in the chapter's first cell."""
    import papermill.cli
    from click.testing import CliRunner

    from helpers.errors import ConfigError

    words = ["in.ipynb", "out.ipynb", "-p", "epochs", "2.5", "-p", "seed", "abc", "-p", "max_folds", "1.5",
             "-p", "compile", "ture", "-p", "tf32", "flase", "-p", "max_folds", "-1"]
    seen = {}
    monkeypatch.setattr(papermill.cli, "execute_notebook", lambda **kwargs: seen.update(kwargs))
    assert CliRunner().invoke(papermill.cli.papermill, words).exit_code == 0
    passed = seen["parameters"]
    assert passed["max_folds"] == -1  # the last -p wins
    for name, value in passed.items():
        with pytest.raises(ConfigError, match=rf"RunConfig\.{name}="):
            make_config("demo", **{name: value})
    with pytest.raises(ConfigError, match="not a whole number"):
        make_config("demo", max_folds=1.5)


def test_cli_refuses_bad_settings_naming_the_flag_or_setting(capsys):
    from helpers import __main__ as cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--epochs", "2.5"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --epochs: RunConfig.epochs='2.5' is not a whole number; give a whole number of at least 1" in err
    assert cli.main(["train", "--max-folds", "-1"]) == 2  # typed by the flag, bounded by the config, before work
    assert "error: RunConfig.max_folds=-1 is out of range" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--tf32", "flase"])
    assert "RunConfig.tf32='flase' is not a boolean" in capsys.readouterr().err


def test_cli_prints_user_errors_on_one_line_and_keeps_tracebacks_for_bugs(tmp_path, capsys, monkeypatch):
    from helpers import __main__ as cli
    from helpers.data.corpora import CorpusError
    from helpers.errors import UserError

    missing = tmp_path / "nope.csv"
    assert cli.main(["corpus", "--manifest", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: manifest {missing} does not exist\n"  # one line, no traceback
    with pytest.raises(CorpusError):  # --debug: the traceback too, before or after the command
        cli.main(["corpus", "--debug", "--manifest", str(missing)])
    with pytest.raises(CorpusError):
        cli.main(["--debug", "corpus", "--manifest", str(missing)])
    assert issubclass(CorpusError, UserError) and issubclass(CorpusError, ValueError)

    def bug(args):
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "_settings", bug)
    with pytest.raises(KeyError):  # not a user error: the traceback stays
        cli.main(["settings"])


def test_a_corpus_the_protocol_cannot_split_is_a_one_line_error(tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    from helpers import __main__ as cli

    rng = np.random.default_rng(0)
    for i in range(4):
        sf.write(tmp_path / f"{i}.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
    (tmp_path / "m.csv").write_text("path,label,speaker\n0.wav,anger,a\n1.wav,sadness,a\n2.wav,anger,b\n"
                                    "3.wav,sadness,b\n")
    assert cli.main(["train", "--profile", "smoke", "--data", str(tmp_path / "m.csv"), "--classes", "anger,sadness",
                     "--protocol", "speaker", "--cache-dir", str(tmp_path / "cache")]) == 2
    assert capsys.readouterr().err == ("error: protocol 'speaker' needs at least 3 speakers (train, validation, "
                                       "test); found ['a', 'b']\n")


def test_the_book_driver_refuses_bad_settings_before_any_chapter_runs(capsys):
    from helpers.book.build import main, settings_problem

    assert settings_problem("demo", {"epochs": 3, "ranks": "8,32"}) == ""  # chapter-only parameters are not settings
    assert settings_problem("demo", {"seed": "abc"}).startswith("RunConfig.seed='abc' is not a whole number")
    with pytest.raises(SystemExit) as exit_:
        main(["-p", "epochs", "2.5", "--chapter", "finetuning"])
    assert exit_.value.code == 2
    assert "error: RunConfig.epochs=2.5 is not a whole number; give a whole number of at least 1" in \
        capsys.readouterr().err
