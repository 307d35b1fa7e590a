"""The GPU check script's CPU path (the script itself runs on a lent GPU machine)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_on_cpu_in_quick_mode(tmp_path, tiny_en_dir):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "BTS_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                             "--out", str(out)], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["smoke"]["folds"] == 2
    assert report["logits"]["max_abs_fp32"] == 0.0  # the same device: identical
    assert [t["seconds"] for t in report["throughput"]] == [30, 8]
    assert all(t["clips_per_s"] > 0 for t in report["throughput"])
    assert [p["pooling"] for p in report["pooling"]] == ["mean", "speech"]
    official, speech = report["pooling"]
    assert official["padding_computed"] > 0.5 > speech["padding_computed"]  # IEMOCAP-like clips in 30 s inputs
    assert speech["clips_per_s"] > 0
