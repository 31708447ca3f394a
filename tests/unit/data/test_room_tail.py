"""The vectorised reverberation tail gives pyroomacoustics' own responses, draws and thread-free sums."""

import contextlib

import numpy as np
import pytest

from spmamba_sb.data import room as room_module
from spmamba_sb.data.room import RoomSimulator
from spmamba_sb.data.room_tail import impulse_times, tail_response, vectorised_tail
from spmamba_sb.data.simulation_config import SimulationConfig

pra = pytest.importorskip("pyroomacoustics")


@pytest.mark.parametrize("sample_rate, rt60", [(16000, (0.5, 0.8)), (8000, (0.2, 0.4))])
def test_rooms_get_the_librarys_own_responses_and_leave_its_generator_as_it_would(sample_rate, rt60, monkeypatch):
    simulator = RoomSimulator(SimulationConfig(sample_rate=sample_rate, duration=1.0, rt60=rt60,
                                               room_min=(3.0, 3.0, 2.5), room_max=(6.0, 5.0, 3.0)))
    rng = np.random.default_rng(sample_rate)
    for _ in range(2):
        room = simulator.draw(rng, num_sources=3)
        with monkeypatch.context() as patch:  # the library's own tail
            patch.setattr(room_module, "vectorised_tail", contextlib.nullcontext)
            stock = simulator.impulse_responses(room)
        after_stock = pra.random.get_rng().uniform(size=3)
        fast = simulator.impulse_responses(room)
        after_fast = pra.random.get_rng().uniform(size=3)
        assert all(np.array_equal(a, b) for a, b in zip(stock, fast))
        np.testing.assert_array_equal(after_stock, after_fast)


def test_impulse_times_are_the_librarys_poisson_process_from_the_same_draws():
    for volume, duration, t0 in ((40.0, 0.3, 0.004), (250.0, 0.9, 0.02)):
        pra.random.seed(numpy=7)
        _, expected = pra.simulation.rt.poisson_sequence(volume, duration, 343.0, t0=t0)
        next_expected = pra.random.get_rng().uniform()
        pra.random.seed(numpy=7)
        times = impulse_times(pra.random.get_rng(), volume, duration, 343.0, t0)
        np.testing.assert_array_equal(times, expected)
        assert pra.random.get_rng().uniform() == next_expected


def test_a_directional_receiver_draws_its_directions_as_the_library_does():
    octave_bands = pra.acoustics.OctaveBandsFactory(fs=8000, n_fft=512)
    histograms = [np.abs(np.random.default_rng(seed).standard_normal((octave_bands.n_bands, 40))) * 1e-3
                  for seed in range(3)]  # three directions
    histograms[1][:, 30:] = 0.0
    arguments = dict(t0=0.01, histograms=histograms,
                     directional_responses={"response": np.array([1.0, 0.5, 0.25]), "is_impulse_response": False},
                     hist_bin_size=0.004, hist_bin_size_samples=32, volume_room=60.0, fdl=81, c=343.0, fs=8000,
                     octave_bands=octave_bands, air_abs_coeffs=np.linspace(1e-4, 1e-2, octave_bands.n_bands))
    pra.random.seed(numpy=3)
    expected = pra.simulation.rt.compute_rt_rir(**arguments)
    pra.random.seed(numpy=3)
    np.testing.assert_array_equal(tail_response(**arguments), expected)


def test_the_swap_lasts_only_the_block_even_when_it_fails():
    stock = pra.room.compute_rt_rir
    with pytest.raises(RuntimeError):
        with vectorised_tail() as swapped:
            assert swapped and pra.room.compute_rt_rir is tail_response
            raise RuntimeError("inside")
    assert pra.room.compute_rt_rir is stock


def test_responses_do_not_depend_on_the_librarys_thread_count():
    simulator = RoomSimulator(SimulationConfig(sample_rate=8000, duration=1.0, rt60=(0.3, 0.3),
                                               room_min=(4.0, 4.0, 2.5), room_max=(4.0, 4.0, 2.5)))
    room = simulator.draw(np.random.default_rng(0), num_sources=2)
    threads = pra.constants.get("num_threads")
    try:
        pra.constants.set("num_threads", 4)
        many = simulator.impulse_responses(room)
        pra.constants.set("num_threads", 1)
        one = simulator.impulse_responses(room)
    finally:
        pra.constants.set("num_threads", threads)
    assert all(np.array_equal(a, b) for a, b in zip(many, one))
    assert pra.constants.get("num_threads") == threads
