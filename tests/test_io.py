"""helpers.io: atomic files, fingerprints and the one comma-list parser."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.io import atomic_csv, atomic_json, atomic_tensors, fingerprint, parse_list, temporary_sibling


def test_parse_list_reads_text_lists_and_scalars():
    assert parse_list("8,32,64", int) == (8, 32, 64)
    assert parse_list(" q_proj , v_proj ,") == ("q_proj", "v_proj")
    assert parse_list([4, 16], int) == (4, 16)
    assert parse_list(8, int) == (8,)
    with pytest.raises(ValueError, match="ranks='8,x'.*'x' is not a int"):
        parse_list("8,x", int, name="ranks")


def test_fingerprint_is_order_free_for_dicts_and_sensitive_to_values():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert len(fingerprint([1], length=12)) == 12


def test_atomic_writes_leave_no_temporary_file(tmp_path):
    atomic_json(tmp_path / "a.json", {"x": np.float32(1.5)})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1.5}
    atomic_csv(tmp_path / "t.csv", pd.DataFrame({"a": [1, 2]}))
    assert pd.read_csv(tmp_path / "t.csv")["a"].tolist() == [1, 2]
    atomic_tensors(tmp_path / "w.safetensors", {"w": torch.arange(6).reshape(2, 3).T})
    atomic_tensors(tmp_path / "n.safetensors", {"n": np.ones((2, 2))}, metadata={"k": "v"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "n.safetensors", "t.csv", "w.safetensors"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    atomic_json(target, {"old": 1})
    with pytest.raises(TypeError):
        atomic_json(target, {"bad": object()}, default=None)
    assert json.loads(target.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_temporary_siblings_are_unique_per_write(tmp_path):
    assert temporary_sibling(tmp_path / "x") != temporary_sibling(tmp_path / "x")
