"""SPMamba speech separation as a SpeechBrain plugin."""

import torch

try:  # SpeechBrain imports torchaudio; a mismatched pair fails there, deep in an unrelated import
    import torchaudio  # noqa: F401
except OSError as error:
    from importlib.metadata import version

    raise ImportError(
        f"torchaudio {version('torchaudio')} does not load with torch {torch.__version__} ({error}); install the "
        f"torchaudio release of your torch, e.g. pip install 'torchaudio=={torch.__version__.split('+')[0]}'"
    ) from None

from spmamba_sb.models.spmamba import SPMamba  # noqa: E402
from spmamba_sb.models.tfgridnet import TFGridNet  # noqa: E402

__all__ = ["SPMamba", "TFGridNet"]
__version__ = "0.1.0"
