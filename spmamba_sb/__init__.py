"""SPMamba speech separation as a SpeechBrain plugin."""

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
