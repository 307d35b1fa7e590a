"""helpers.config and the CLI generated from it: profiles, overrides, help text for every setting."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from helpers.config import PROFILES, RunConfig, make_config, settings_table
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
