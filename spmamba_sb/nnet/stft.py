"""STFT front end and iSTFT back end sharing one configuration; computed in fp32 (fp64 for fp64 input)."""

import inspect
from typing import Optional

import torch
import torch.nn as nn

WINDOWS = ("hann", "hamming", "blackman", "bartlett", "kaiser")


class STFTConfig(nn.Module):
    """Validated STFT settings and the analysis window (a buffer, so it follows ``.to()``).

    Arguments
    ---------
    n_fft : int
        FFT size (even); F = n_fft // 2 + 1 bins.
    hop_length : int
        Hop between frames in samples.
    win_length : int, optional
        Window length; defaults to ``n_fft``.
    window : str
        One of ``WINDOWS``; the periodic ``torch.<window>_window``.

    Example
    -------
    >>> STFTConfig(512, 128).n_freqs
    257
    """

    def __init__(self, n_fft: int = 512, hop_length: int = 128, win_length: Optional[int] = None, window: str = "hann"):
        super().__init__()
        if not isinstance(n_fft, int) or n_fft < 2 or n_fft % 2:
            raise ValueError(f"n_fft must be an even int >= 2, got {n_fft!r}")
        win_length = n_fft if win_length is None else win_length
        if not 1 <= win_length <= n_fft:
            raise ValueError(f"win_length must be in [1, n_fft={n_fft}], got {win_length!r}")
        if not isinstance(hop_length, int) or not 1 <= hop_length <= win_length:
            raise ValueError(f"hop_length must be an int in [1, win_length={win_length}], got {hop_length!r}")
        if window not in WINDOWS:
            raise ValueError(f"window={window!r} is not one of {WINDOWS}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.n_freqs = n_fft // 2 + 1
        self.window_name = window
        self.register_buffer("window", getattr(torch, f"{window}_window")(win_length), persistent=False)

    def num_frames(self, length: int) -> int:
        """Frames of a signal of ``length`` samples (centred frames)."""
        return length // self.hop_length + 1


#: The names of the STFT settings, as :class:`STFTConfig` takes them.
STFT_SETTINGS = tuple(inspect.signature(STFTConfig).parameters)


class STFTEncoder(STFTConfig):
    """Waveform to stacked real and imaginary spectrum: [..., L] -> [..., 2, T, F].

    Centred frames with reflect padding, onesided, unnormalised (``torch.stft``).

    Example
    -------
    >>> STFTEncoder(n_fft=64, hop_length=16)(torch.randn(3, 1000)).shape
    torch.Size([3, 2, 63, 33])
    """

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """[..., L] -> [..., 2, T, F]."""
        lead, length = wave.shape[:-1], wave.shape[-1]
        dtype = torch.promote_types(wave.dtype, torch.float32)
        with torch.autocast(wave.device.type, enabled=False):
            spec = torch.stft(
                wave.reshape(-1, length).to(dtype),
                self.n_fft,
                self.hop_length,
                self.win_length,
                self.window.to(dtype),
                center=True,
                return_complex=True,
            )  # [*, F, T]
        spec = torch.stack([spec.real, spec.imag], dim=1).transpose(-1, -2)  # [*, 2, T, F]
        return spec.reshape(*lead, *spec.shape[1:])


class ISTFTDecoder(STFTConfig):
    """Stacked real and imaginary spectrum to waveform: [..., 2, T, F] -> [..., length].

    Example
    -------
    >>> decoder = ISTFTDecoder(n_fft=64, hop_length=16)
    >>> decoder(torch.randn(3, 2, 63, 33), length=1000).shape
    torch.Size([3, 1000])
    """

    def forward(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """[..., 2, T, F] -> [..., length] (fp32, or fp64 for fp64 input)."""
        lead = spec.shape[:-3]
        dtype = torch.promote_types(spec.dtype, torch.float32)
        with torch.autocast(spec.device.type, enabled=False):
            spec = spec.reshape(-1, *spec.shape[-3:]).to(dtype).transpose(-1, -2)  # [*, 2, F, T]
            wave = torch.istft(
                torch.complex(spec[:, 0], spec[:, 1]),
                self.n_fft,
                self.hop_length,
                self.win_length,
                self.window.to(dtype),
                center=True,
                length=length,
            )  # [*, length]
        return wave.reshape(*lead, length)
