"""A torchaudio that does not load with the installed torch is named, with the fix, at import; the
data commands import neither torch nor SpeechBrain."""

import subprocess
import sys

import pytest
import torch

# Run in a fresh interpreter whose torchaudio fails to load as a mismatched build does (an OSError
# from its shared library), then import a module of the package.
MISMATCHED_TORCHAUDIO = """
import importlib, importlib.abc, sys

class BrokenLibrary(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torchaudio":
            raise OSError("libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace")

sys.meta_path.insert(0, BrokenLibrary())
importlib.import_module(sys.argv[1])
"""


@pytest.mark.parametrize("module", ["spmamba_sb.inference", "spmamba_sb.cli", "spmamba_sb.brain",
                                    "spmamba_sb.data.pipelines"])
def test_a_torchaudio_that_does_not_load_is_named_with_the_fix(tmp_path, module):
    result = subprocess.run([sys.executable, "-c", MISMATCHED_TORCHAUDIO, module], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    release = torch.__version__.split("+")[0]
    assert last.startswith("ImportError: torchaudio ") and f"does not load with torch {torch.__version__}" in last
    assert "undefined symbol" in last and f"pip install 'torchaudio=={release}'" in last


def test_the_data_commands_import_neither_torch_nor_speechbrain(tmp_path):
    code = ("import sys, spmamba_sb.data.prepare_cli\n"
            "print(sorted({name.split('.')[0] for name in sys.modules} & {'torch', 'torchaudio', 'speechbrain'}))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            check=True)
    assert loaded.stdout.strip() == "[]"
