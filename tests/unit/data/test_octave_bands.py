"""The spectral octave bands are pyroomacoustics' own to its FFT rounding, and the swap is undone after the block."""

import contextlib

import numpy as np
import pytest

from spmamba_sb.data import room as room_module
from spmamba_sb.data.octave_bands import band_gains, band_signals, spectral_octave_bands
from spmamba_sb.data.room import RoomSimulator
from spmamba_sb.data.simulation_config import SimulationConfig

pra = pytest.importorskip("pyroomacoustics")

#: Largest difference to the library's band signals, as a fraction of their peak (its per-band FFTs round so).
_TOLERANCE = 1e-10


def _bank(sample_rate: int):
    return pra.acoustics.AntoniOctaveFilterBank(fs=sample_rate, n_fft=512)


@pytest.mark.parametrize("sample_rate", [8000, 16000, 44100])
@pytest.mark.parametrize("length", [100, 4097, 15000])
def test_band_signals_are_the_librarys_analysis(sample_rate, length):
    filter_bank = _bank(sample_rate)
    signal = np.random.default_rng(length).standard_normal(length)
    expected = filter_bank.analysis(signal)
    bands = band_signals(filter_bank, signal)
    assert bands.shape == expected.shape == (length, filter_bank.n_bands)
    np.testing.assert_allclose(bands, expected, rtol=0, atol=_TOLERANCE * np.max(np.abs(expected)))


def test_one_band_a_list_of_bands_and_batches_take_the_librarys_shapes():
    filter_bank = _bank(16000)
    signals = np.random.default_rng(0).standard_normal((2, 3000))
    for band in (3, [0, 6], [5]):
        expected = filter_bank.analysis(signals, band=band)
        bands = band_signals(filter_bank, signals, band=band)
        assert bands.shape == expected.shape
        np.testing.assert_allclose(bands, expected, rtol=0, atol=_TOLERANCE * np.max(np.abs(expected)))
    with pytest.raises(ValueError, match="band='low'"):
        band_signals(filter_bank, signals, band="low")


def test_the_bands_add_up_to_the_signal():
    filter_bank = _bank(16000)
    gains = band_gains(filter_bank, 2048)
    assert gains.shape == (filter_bank.n_bands, 1025) and not gains.flags.writeable
    np.testing.assert_allclose(gains.sum(axis=0), 1.0, atol=1e-12)
    signal = np.random.default_rng(1).standard_normal(1000)
    np.testing.assert_allclose(band_signals(filter_bank, signal).sum(axis=-1), signal, atol=1e-12)


def test_the_swap_changes_only_this_bank_and_lasts_only_the_block_even_when_it_fails():
    filter_bank, other = _bank(16000), _bank(16000)
    signal = np.random.default_rng(2).standard_normal(500)
    with pytest.raises(RuntimeError):
        with spectral_octave_bands(filter_bank) as swapped:
            assert swapped
            np.testing.assert_array_equal(filter_bank.analysis(signal), band_signals(filter_bank, signal))
            assert "analysis" not in vars(other)
            with spectral_octave_bands(filter_bank):
                pass
            assert "analysis" in vars(filter_bank)  # the outer swap holds after an inner one
            raise RuntimeError("inside")
    assert "analysis" not in vars(filter_bank)
    with spectral_octave_bands(pra.acoustics.OctaveBandsFactory(fs=16000)) as swapped:
        assert not swapped  # another kind of bank keeps its own analysis


@pytest.mark.parametrize("sample_rate, num_channels", [(16000, 1), (8000, 2)])
def test_rooms_get_the_librarys_responses_to_its_rounding_and_the_same_draws(sample_rate, num_channels,
                                                                             monkeypatch):
    simulator = RoomSimulator(SimulationConfig(sample_rate=sample_rate, duration=1.0, rt60=(0.3, 0.6),
                                               num_channels=num_channels, room_min=(3.0, 3.0, 2.5),
                                               room_max=(6.0, 5.0, 3.0)))
    room = simulator.draw(np.random.default_rng(sample_rate), num_sources=3)
    with monkeypatch.context() as patch:  # the library's own octave bands
        patch.setattr(room_module, "spectral_octave_bands", lambda filter_bank: contextlib.nullcontext(False))
        stock = simulator.impulse_responses(room)
    after_stock = pra.random.get_rng().uniform(size=3)
    fast = simulator.impulse_responses(room)
    after_fast = pra.random.get_rng().uniform(size=3)
    for expected, response in zip(stock, fast):
        assert response.shape == expected.shape
        np.testing.assert_allclose(response, expected, rtol=0, atol=_TOLERANCE * np.max(np.abs(expected)))
    np.testing.assert_array_equal(after_stock, after_fast)
