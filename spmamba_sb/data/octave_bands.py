"""pyroomacoustics' octave-band analysis as one spectral product per band.

pyroomacoustics splits a signal into octave bands with Antoni's filter bank: per band, two FFTs
of the band's bins (of lengths with large prime factors, so slow) to analyse and one more to
synthesise, then an inverse FFT of the whole spectrum; and it designs the band windows again on
every call. Analysis followed by synthesis multiplies the band's bins by the square of the band's
window and does nothing else, so :func:`band_signals` gives the same band signals from one forward
FFT of the signal and one inverse FFT per band, with the windows designed once per FFT length.
:func:`spectral_octave_bands` swaps it into a room's filter bank for the duration of a ``with``
block; a room uses the bank for the early reflections of every band and for the ray-traced tail.
The band signals are the library's own to its FFT rounding (about 1e-11 of their peak, the
tests compare them), so a corpus made either way differs by float32 rounding alone: no sample
of a 16 kHz demo corpus moved by more than half a float32 step of its file's peak.
"""

import contextlib
import inspect
import math
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from spmamba_sb.data.extras import import_data_extra

#: The arguments of ``AntoniOctaveFilterBank.analysis`` that :func:`band_signals` mirrors.
_STOCK_SIGNATURE = ("x", "band", "oversampling")
_GAINS: Dict[Tuple[Any, ...], np.ndarray] = {}


def band_gains(filter_bank, n_fft: int) -> np.ndarray:
    """Squared band windows of ``filter_bank`` on the bins of an ``n_fft`` FFT (computed once per bank and size).

    Arguments
    ---------
    filter_bank : pyroomacoustics.acoustics.AntoniOctaveFilterBank
        The bank whose bands, centres, overlap and slope are used.
    n_fft : int
        FFT length.

    Returns
    -------
    np.ndarray
        [n_bands, n_fft // 2 + 1] read-only gains; they sum to one on every bin.

    Example
    -------
    >>> pra = import_data_extra("pyroomacoustics", "band_gains")
    >>> gains = band_gains(pra.acoustics.AntoniOctaveFilterBank(fs=16000), 1024)
    >>> gains.shape, bool(np.allclose(gains.sum(axis=0), 1.0))
    ((7, 513), True)
    """
    key = (filter_bank.fs, int(n_fft), filter_bank.overlap_ratio, filter_bank.slope,
           filter_bank.centers.tobytes(), filter_bank.bands.tobytes())
    if key not in _GAINS:
        pra = import_data_extra("pyroomacoustics", "band_gains")
        windows, *_ = pra.acoustics.antoni_magnitude_octave_filter_response(
            int(n_fft), filter_bank.centers, filter_bank.bands, filter_bank.fs, filter_bank.overlap_ratio,
            filter_bank.slope)  # [n_bands, F], zero outside the bins the library analyses for the band
        gains = windows ** 2
        gains.flags.writeable = False
        _GAINS[key] = gains
    return _GAINS[key]


def band_signals(filter_bank, x: np.ndarray, band: Optional[Union[int, Sequence[int]]] = None,
                 oversampling: int = 2) -> np.ndarray:
    """``filter_bank.analysis(x, band, oversampling)``: ``x`` split into octave bands, from one FFT of it.

    Arguments
    ---------
    filter_bank : pyroomacoustics.acoustics.AntoniOctaveFilterBank
        The bank (the library's argument names are kept, so this can stand in for its method).
    x : np.ndarray
        [..., L] signal.
    band : int or list of int, optional
        The bands to return; all of them by default.
    oversampling : int
        The FFT is the next power of two at or above ``oversampling * L`` long (as the library's).

    Returns
    -------
    np.ndarray
        [..., L, n_bands] band signals, or [..., L] when one band is asked for.

    Raises
    ------
    ValueError
        If ``band`` is not an int or a list of ints.

    Example
    -------
    >>> pra = import_data_extra("pyroomacoustics", "band_signals")
    >>> filter_bank = pra.acoustics.AntoniOctaveFilterBank(fs=16000)
    >>> x = np.random.default_rng(0).standard_normal(1000)
    >>> bands = band_signals(filter_bank, x)
    >>> bands.shape, bool(np.allclose(bands, filter_bank.analysis(x), atol=1e-10))
    ((1000, 7), True)
    """
    if band is None:
        bands = list(range(filter_bank.n_bands))
    elif isinstance(band, (int, np.integer)):
        bands = [int(band)]
    elif isinstance(band, list) and all(isinstance(index, (int, np.integer)) for index in band):
        bands = [int(index) for index in band]
    else:
        raise ValueError(f"band={band!r} must be None, an int or a list of ints")
    n_samples = x.shape[-1]
    n_fft = 2 ** math.ceil(math.log2(oversampling * n_samples))
    spectrum = np.fft.rfft(x, n=n_fft, axis=-1)  # [..., F]
    gains = band_gains(filter_bank, n_fft)[bands]  # [n_bands, F]
    filtered = np.fft.irfft(spectrum[..., None, :] * gains, n=n_fft, axis=-1)[..., :n_samples]  # [..., n_bands, L]
    output = np.swapaxes(filtered, -1, -2)  # [..., L, n_bands]
    return output[..., 0] if output.shape[-1] == 1 else output


def _supported(pra, filter_bank) -> bool:
    if not isinstance(filter_bank, getattr(pra.acoustics, "AntoniOctaveFilterBank", ())):
        return False
    stock = getattr(type(filter_bank), "analysis", None)
    analysed = tuple(inspect.signature(stock).parameters)[1:] if stock is not None else ()
    response = getattr(pra.acoustics, "antoni_magnitude_octave_filter_response", None)
    return analysed == _STOCK_SIGNATURE and response is not None


@contextlib.contextmanager
def spectral_octave_bands(filter_bank) -> Iterator[bool]:
    """Within the block, ``filter_bank.analysis`` is :func:`band_signals` on it.

    Yields whether the swap was made: another kind of bank, or a pyroomacoustics whose analysis
    takes other arguments, keeps its own.

    Arguments
    ---------
    filter_bank : pyroomacoustics.acoustics.AntoniOctaveFilterBank
        A room's bank (``room.octave_bands``); only this object is changed.

    Example
    -------
    >>> pra = import_data_extra("pyroomacoustics", "spectral_octave_bands")
    >>> filter_bank = pra.acoustics.AntoniOctaveFilterBank(fs=16000)
    >>> with spectral_octave_bands(filter_bank) as swapped:
    ...     swapped, filter_bank.analysis(np.ones(100)).shape
    (True, (100, 7))
    """
    pra = import_data_extra("pyroomacoustics", "spectral_octave_bands")
    if not _supported(pra, filter_bank):
        yield False
        return

    def analysis(x, band=None, oversampling=2):
        return band_signals(filter_bank, x, band=band, oversampling=oversampling)

    own = vars(filter_bank).pop("analysis", None)  # a swap already made on this bank
    filter_bank.analysis = analysis
    try:
        yield True
    finally:
        del filter_bank.analysis
        if own is not None:
            filter_bank.analysis = own
