"""A torchaudio that does not load with the installed torch is named, with the fix, at import."""

import subprocess
import sys

import torch

# Run in a fresh interpreter whose torchaudio fails to load as a mismatched build does (an OSError
# from its shared library), then import the package.
MISMATCHED_TORCHAUDIO = """
import importlib.abc, sys

class BrokenLibrary(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torchaudio":
            raise OSError("libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace")

sys.meta_path.insert(0, BrokenLibrary())
import spmamba_sb
"""


def test_a_torchaudio_that_does_not_load_is_named_with_the_fix(tmp_path):
    result = subprocess.run([sys.executable, "-c", MISMATCHED_TORCHAUDIO], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    release = torch.__version__.split("+")[0]
    assert last.startswith("ImportError: torchaudio ") and f"does not load with torch {torch.__version__}" in last
    assert "undefined symbol" in last and f"pip install 'torchaudio=={release}'" in last
