"""Pytest setup shared by the doctests and the test suite."""

import importlib.util

import pytest
import torch

# The Triton kernels' modules import Triton, which CPU-only PyTorch builds do not bring.
TRITON_MODULES = ["spmamba_sb/nnet/scan_triton.py", "spmamba_sb/nnet/conv_triton.py", "spmamba_sb/nnet/mixer_triton.py"]
collect_ignore = [] if importlib.util.find_spec("triton") else TRITON_MODULES


@pytest.fixture(autouse=True)
def _doctest_torch(doctest_namespace):
    """Make ``torch`` available to every doctest."""
    doctest_namespace["torch"] = torch
