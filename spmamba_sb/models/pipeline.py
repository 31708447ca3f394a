"""The one forward flow of every model: normalise, encode, mask net, decode, de-normalise."""

from typing import Callable, Tuple

import torch


def as_multichannel(mix: torch.Tensor, min_length: int = 1) -> torch.Tensor:
    """Check a waveform batch and bring it to [B, M, L].

    Arguments
    ---------
    mix : torch.Tensor
        [L], [B, L] or [B, L, M] (M microphones last, as the reference model takes them).
    min_length : int
        Fewest samples accepted (one STFT frame).

    Returns
    -------
    torch.Tensor
        [B, M, L].

    Raises
    ------
    ValueError
        On a wrong rank, too few samples or non-finite samples (a data-dependent check, made
        in eager mode only: under ``torch.compile`` it would split the graph).

    Example
    -------
    >>> as_multichannel(torch.zeros(2, 100, 3)).shape
    torch.Size([2, 3, 100])
    """
    if not torch.is_tensor(mix) or not mix.is_floating_point():
        kind = f"a tensor of {mix.dtype}" if torch.is_tensor(mix) else type(mix).__name__
        raise ValueError(f"expected a floating-point waveform tensor, got {kind}")
    if mix.ndim == 1:
        mix = mix[None, None]  # [1, 1, L]
    elif mix.ndim == 2:
        mix = mix[:, None]  # [B, 1, L]
    elif mix.ndim == 3:
        mix = mix.transpose(1, 2)  # [B, M, L]
    else:
        raise ValueError(f"expected a waveform of shape [L], [B, L] or [B, L, M], got {tuple(mix.shape)}")
    if mix.shape[-1] < min_length:
        raise ValueError(
            f"input has {mix.shape[-1]} samples, shorter than one STFT frame ({min_length} samples)"
        )
    if not torch.compiler.is_compiling() and not torch.isfinite(mix).all():  # data-dependent: eager only
        raise ValueError("input contains NaN or Inf samples")
    return mix


def normalise(mix: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Divide each utterance by its standard deviation over samples and microphones.

    A silent utterance (std 0) is left as it is and gets scale 0, so that de-normalising
    the output gives silence instead of NaN.

    Arguments
    ---------
    mix : torch.Tensor
        [B, M, L].

    Returns
    -------
    normalised : torch.Tensor
        [B, M, L].
    scale : torch.Tensor
        [B, 1, 1], the (unbiased) standard deviation.

    Example
    -------
    >>> x, scale = normalise(torch.zeros(2, 1, 10))
    >>> scale.flatten().tolist()
    [0.0, 0.0]
    """
    scale = mix.float().std(dim=(1, 2), keepdim=True)  # [B, 1, 1]
    return mix / torch.where(scale > 0, scale, torch.ones_like(scale)), scale


def separate(
    mix: torch.Tensor,
    encoder: Callable[[torch.Tensor], torch.Tensor],
    masknet: Callable[[torch.Tensor], torch.Tensor],
    decoder: Callable[..., torch.Tensor],
) -> torch.Tensor:
    """Separate a normalised batch: the single forward flow shared by every model.

    Arguments
    ---------
    mix : torch.Tensor
        [B, M, L], checked by :func:`as_multichannel`.
    encoder : callable
        [B, M, L] -> [B, M, 2, T, F] (:class:`~spmamba_sb.nnet.stft.STFTEncoder`).
    masknet : callable
        [B, 2M, T, F] (all real parts, then all imaginary parts) -> [B, S, 2, T, F].
    decoder : callable
        ([B, S, 2, T, F], length) -> [B, S, L] (:class:`~spmamba_sb.nnet.stft.ISTFTDecoder`).

    Returns
    -------
    torch.Tensor
        [B, S, L], at the scale of the input.

    Example
    -------
    >>> from spmamba_sb.nnet.stft import ISTFTDecoder, STFTEncoder
    >>> encoder, decoder = STFTEncoder(64, 16), ISTFTDecoder(64, 16)
    >>> copy_twice = lambda spec: spec.unsqueeze(1).repeat(1, 2, 1, 1, 1)
    >>> separate(torch.randn(3, 1, 1000), encoder, copy_twice, decoder).shape
    torch.Size([3, 2, 1000])
    """
    normalised, scale = normalise(mix)
    spec = encoder(normalised)  # [B, M, 2, T, F]
    spec = spec.transpose(1, 2).flatten(1, 2)  # [B, 2M, T, F]
    estimate = masknet(spec)  # [B, S, 2, T, F]
    return decoder(estimate, length=mix.shape[-1]) * scale  # [B, S, L]
