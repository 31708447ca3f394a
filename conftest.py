"""Pytest setup shared by the doctests and the test suite."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _doctest_torch(doctest_namespace):
    """Make ``torch`` available to every doctest."""
    doctest_namespace["torch"] = torch
