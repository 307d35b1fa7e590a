"""Device and precision selection."""

import pytest
import torch

from helpers.training.device import autocast, pick_device, resolve_precision


def test_explicit_cpu():
    assert pick_device("cpu") == torch.device("cpu")


def test_auto_picks_an_available_device():
    device = pick_device("auto")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert device.type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda_says_so():
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")


def test_cpu_auto_precision_is_fp32_and_autocast_is_a_no_op():
    cpu = torch.device("cpu")
    assert resolve_precision(cpu) == torch.float32
    with autocast(cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_bf16_autocast_on_cpu_changes_matmul_dtype():
    with autocast(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        resolve_precision(torch.device("cpu"), "int4")
