"""Layer norms over the channels of [B, D, T, F] feature maps, and Mamba's RMSNorm.

``LayerNorm4D`` normalises each time-frequency point over its channels. ``LayerNorm4DCF``
normalises each frame over channels and frequencies jointly, optionally in independent
groups of channels (one per attention head). Its gain and bias have one value per
(channel, frequency), so a model that uses it is tied to its ``n_fft``: a checkpoint only
loads into a model with the same number of frequency bins.
"""

import torch
import torch.nn as nn


class LayerNorm4D(nn.Module):
    """Normalise over channels at every (frame, frequency): [B, D, T, F] -> [B, D, T, F].

    Arguments
    ---------
    num_channels : int
        D.
    eps : float
        Added to the (biased) variance.

    Example
    -------
    >>> LayerNorm4D(4)(torch.randn(2, 4, 5, 6)).shape
    torch.Size([2, 4, 5, 6])
    """

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(1, num_channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, num_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D, T, F] -> [B, D, T, F]."""
        var, mean = torch.var_mean(x, dim=1, keepdim=True, correction=0)  # [B, 1, T, F]
        return (x - mean) * torch.rsqrt(var + self.eps) * self.gamma + self.beta


class LayerNorm4DCF(nn.Module):
    """Normalise each frame over (channels, frequencies), per group of channels.

    With ``num_groups`` groups the D channels are split into groups of D / num_groups and
    each group is normalised on its own (one group per attention head).

    Arguments
    ---------
    num_channels : int
        D, the total channels.
    n_freqs : int
        F, the frequency bins; gain and bias have shape [1, D, 1, F].
    num_groups : int
        Independent groups of channels.
    eps : float
        Added to the (biased) variance.

    Example
    -------
    >>> LayerNorm4DCF(4, n_freqs=6, num_groups=2)(torch.randn(2, 4, 5, 6)).shape
    torch.Size([2, 4, 5, 6])
    """

    def __init__(self, num_channels: int, n_freqs: int, num_groups: int = 1, eps: float = 1e-5):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"num_channels={num_channels} is not divisible by num_groups={num_groups}")
        self.num_groups = num_groups
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(1, num_channels, 1, n_freqs))
        self.beta = nn.Parameter(torch.zeros(1, num_channels, 1, n_freqs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D, T, F] -> [B, D, T, F]."""
        batch, channels, n_frames, n_freqs = x.shape
        grouped = x.view(batch, self.num_groups, channels // self.num_groups, n_frames, n_freqs)
        var, mean = torch.var_mean(grouped, dim=(2, 4), keepdim=True, correction=0)  # [B, G, 1, T, 1]
        normed = ((grouped - mean) * torch.rsqrt(var + self.eps)).view_as(x)  # [B, D, T, F]
        return normed * self.gamma + self.beta


class ChannelRMSNorm(nn.Module):
    """RMSNorm over the first (channel) axis of channel-major [D, rows, L] sequences.

    ``y = x * rsqrt(mean_D(x^2) + eps) * weight``, as ``torch.nn.RMSNorm(D)`` computes for
    channel-last inputs, with the same ``weight`` parameter.

    Arguments
    ---------
    num_channels : int
        D.
    eps : float
        Added to the mean square.

    Example
    -------
    >>> x = torch.randn(4, 2, 5)
    >>> y = ChannelRMSNorm(4)(x)
    >>> torch.allclose(y, torch.nn.RMSNorm(4, eps=1e-5)(x.permute(1, 2, 0)).permute(2, 0, 1), atol=1e-6)
    True
    """

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[D, ...] -> [D, ...]."""
        scale = torch.rsqrt(x.pow(2).mean(0, keepdim=True) + self.eps)  # [1, ...]
        return x * scale * self.weight.view(-1, *(1,) * (x.ndim - 1))
