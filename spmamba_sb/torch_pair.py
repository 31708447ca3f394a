"""A torchaudio that does not load with the installed torch, named with its fix.

SpeechBrain imports torchaudio, and a mismatched pair (a plain resolver's torchaudio 2.11.1 beside
torch 2.11.0) fails there with an undefined symbol, deep in an unrelated import. Every module of
the package that imports SpeechBrain or torchaudio imports this one before them
(``tests/unit/test_import_rules.py``), so that failure names the pair and the command that mends
it. The data commands import neither (nor torch), and start in about a second.

Example
-------
>>> import spmamba_sb.torch_pair  # raises ImportError with the fix where torchaudio does not load
"""

import torch

try:
    import torchaudio  # noqa: F401
except OSError as error:
    from importlib.metadata import version

    raise ImportError(
        f"torchaudio {version('torchaudio')} does not load with torch {torch.__version__} ({error}); install the "
        f"torchaudio release of your torch, e.g. pip install 'torchaudio=={torch.__version__.split('+')[0]}'"
    ) from None
