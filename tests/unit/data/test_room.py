"""Random shoebox rooms: positions inside the room, array geometry, seeded impulse responses."""

import numpy as np
import pytest

from spmamba_sb.data.room import RoomSimulator


@pytest.mark.parametrize("num_channels", [1, 2, 4])
def test_drawn_rooms_respect_the_ranges(make_config, num_channels):
    config = make_config(num_channels=num_channels)
    simulator = RoomSimulator(config)
    for seed in range(5):
        room = simulator.draw(np.random.default_rng(seed), num_sources=5)
        size = np.array(room["size"])
        assert np.all(size >= config.room_min) and np.all(size <= config.room_max)
        assert config.rt60[0] <= room["rt60"] <= config.rt60[1] and 0 < room["absorption"] <= 1
        positions = np.array(room["sources"] + room["microphones"])
        assert positions.shape == (5 + num_channels, 3)
        assert np.all(positions >= config.wall_margin - 1e-9) and np.all(positions <= size - config.wall_margin + 1e-9)
        microphones = np.array(room["microphones"])
        if num_channels > 1:
            radii = np.linalg.norm(microphones - np.array(room["array_center"]), axis=1)
            np.testing.assert_allclose(radii, config.array_radius)
        distances = np.linalg.norm(np.array(room["sources"]) - np.array(room["array_center"]), axis=1)
        assert np.all(distances >= config.min_source_distance)


def test_impulse_responses_are_seeded_and_shaped(make_config):
    simulator = RoomSimulator(make_config(num_channels=2))
    room = simulator.draw(np.random.default_rng(0), num_sources=2)
    first = simulator.impulse_responses(room)
    other = simulator.impulse_responses(simulator.draw(np.random.default_rng(1), num_sources=2))
    again = simulator.impulse_responses(room)
    assert len(first) == 2 and first[0].ndim == 2 and first[0].shape[0] == 2
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0][0, :100], other[0][0, :100])
    # the direct path arrives after distance / speed of sound
    distance = np.linalg.norm(np.array(room["sources"][0]) - np.array(room["microphones"][0]))
    onset = np.argmax(np.abs(first[0][0]) > 0.1 * np.abs(first[0][0]).max())
    expected = distance / 343.0 * simulator.config.sample_rate
    assert expected <= onset <= expected + 100  # pyroomacoustics' fractional-delay filter adds a fixed lag


def test_unreachable_reverberation_is_explained(make_config):
    config = make_config(rt60=(0.01, 0.01), room_min=(9.0, 9.0, 3.0), room_max=(10.0, 10.0, 4.0))
    with pytest.raises(ValueError, match=r"rt60=\(0.01, 0.01\) cannot be reached"):
        RoomSimulator(config).draw(np.random.default_rng(0), num_sources=1)
