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

__all__ = ["SPMamba", "TFGridNet"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """The models, imported when first asked for: the data and scoring tools load none of them."""
    if name == "SPMamba":
        from spmamba_sb.models.spmamba import SPMamba

        return SPMamba
    if name == "TFGridNet":
        from spmamba_sb.models.tfgridnet import TFGridNet

        return TFGridNet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
