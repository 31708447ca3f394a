"""SPMamba speech separation as a SpeechBrain plugin."""

from spmamba_sb.models.spmamba import SPMamba
from spmamba_sb.models.tfgridnet import TFGridNet

__all__ = ["SPMamba", "TFGridNet"]
__version__ = "0.1.0"
