"""Random shoebox rooms and their impulse responses (pyroomacoustics, image sources + ray tracing)."""

import logging
import warnings
from typing import Any, Dict, List

import numpy as np

from spmamba_sb.data.extras import import_data_extra
from spmamba_sb.data.octave_bands import spectral_octave_bands
from spmamba_sb.data.room_tail import vectorised_tail
from spmamba_sb.data.simulation_config import SimulationConfig

logger = logging.getLogger(__name__)

_MAX_TRIES = 100


class RoomSimulator:
    """Draws rooms, microphone arrays and source positions, and computes their impulse responses.

    A room is a JSON-ready dict, so a mixture's metadata holds everything needed to compute the
    same impulse responses again:
    ``{"size": [x, y, z], "rt60": s, "absorption": a, "ism_order": n, "num_rays": n | None,
    "air_absorption": True, "microphones": [[x, y, z]] * C, "array_center": [x, y, z],
    "sources": [[x, y, z]] * num_sources, "seed": int}``.
    Walls share one energy absorption coefficient from Sabine's formula for the drawn RT60
    (``pra.inverse_sabine``); image sources up to ``ism_order`` give the early reflections and ray
    tracing the late tail (pyroomacoustics' hybrid simulator), with air absorption. The ray tracer's
    random parts are seeded from ``seed``, and the image sources are summed on one thread (in
    pyroomacoustics' default of one thread per core, the float32 sums, and so the responses, change
    with the machine's core count). The tail is computed by
    :func:`~spmamba_sb.data.room_tail.tail_response`, which gives pyroomacoustics' own numbers three
    to four times faster, and the octave bands of both parts by
    :func:`~spmamba_sb.data.octave_bands.band_signals`, which gives the library's own to its FFT
    rounding several times faster.

    Arguments
    ---------
    config : SimulationConfig
        Room ranges, microphone count and array radius, sample rate.

    Example
    -------
    >>> config = SimulationConfig(sample_rate=8000, duration=1.0, rt60=(0.2, 0.2),
    ...                           room_min=(3.0, 3.0, 2.5), room_max=(3.5, 3.5, 2.5), num_rays=500)
    >>> simulator = RoomSimulator(config)
    >>> room = simulator.draw(np.random.default_rng(0), num_sources=2)
    >>> impulse_responses = simulator.impulse_responses(room)
    >>> len(impulse_responses), impulse_responses[0].shape[0]
    (2, 1)
    """

    def __init__(self, config: SimulationConfig):
        self.config = config

    def _draw_size(self, rng: np.random.Generator):
        config = self.config
        pra = import_data_extra("pyroomacoustics", "RoomSimulator")
        for _ in range(_MAX_TRIES):
            size = rng.uniform(config.room_min, config.room_max)
            rt60 = float(rng.uniform(*config.rt60))
            try:
                absorption, _ = pra.inverse_sabine(rt60, size)
            except ValueError:  # this RT60 needs walls absorbing more than all energy: room too large
                continue
            if 0 < absorption <= 1:
                return size, rt60, float(absorption)
        raise ValueError(f"rt60={config.rt60} cannot be reached in rooms between room_min={config.room_min} and "
                         f"room_max={config.room_max}; use longer RT60s or smaller rooms")

    def _microphones(self, rng: np.random.Generator, size: np.ndarray):
        config = self.config
        low = np.full(3, config.wall_margin)
        low[:2] += config.array_radius
        high = size - low
        center = rng.uniform(low, high)
        if config.num_channels == 1:
            return center, center[None]
        rotation = rng.uniform(0.0, 2 * np.pi)
        angles = rotation + 2 * np.pi * np.arange(config.num_channels) / config.num_channels
        offsets = config.array_radius * np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], 1)
        return center, center + offsets  # [C, 3]

    def _source(self, rng: np.random.Generator, size: np.ndarray, center: np.ndarray) -> np.ndarray:
        config = self.config
        best, best_distance = None, -1.0
        for _ in range(_MAX_TRIES):
            position = rng.uniform(config.wall_margin, size - config.wall_margin)
            distance = float(np.linalg.norm(position - center))
            if distance >= config.min_source_distance:
                return position
            if distance > best_distance:
                best, best_distance = position, distance
        return best

    def draw(self, rng: np.random.Generator, num_sources: int) -> Dict[str, Any]:
        """Draw a room, an array position and orientation, and ``num_sources`` source positions.

        Arguments
        ---------
        rng : np.random.Generator
            Source of every random choice.
        num_sources : int
            Sources to place.

        Returns
        -------
        dict
            The room description (see the class docstring).

        Raises
        ------
        ValueError
            If the RT60 range cannot be reached in the room size range.
        """
        size, rt60, absorption = self._draw_size(rng)
        center, microphones = self._microphones(rng, size)
        sources = [self._source(rng, size, center) for _ in range(num_sources)]
        return {"size": size.tolist(), "rt60": rt60, "absorption": absorption, "ism_order": self.config.ism_order,
                "num_rays": self.config.num_rays, "air_absorption": True,
                "microphones": microphones.tolist(), "array_center": center.tolist(),
                "sources": [position.tolist() for position in sources],
                "seed": int(rng.integers(0, 2 ** 63 - 1))}

    def impulse_responses(self, room: Dict[str, Any]) -> List[np.ndarray]:
        """Impulse response from every source to every microphone.

        Reseeds pyroomacoustics' package-wide random generators (``pra.random.seed``) from the room's
        seed, so the same room always gives the same responses.

        Arguments
        ---------
        room : dict
            As returned by :meth:`draw`.

        Returns
        -------
        list of np.ndarray
            One [C, K] array per source (K the longest response, zero-padded).
        """
        pra = import_data_extra("pyroomacoustics", "RoomSimulator")
        shoebox = pra.ShoeBox(room["size"], fs=self.config.sample_rate, materials=pra.Material(room["absorption"]),
                              max_order=room["ism_order"], ray_tracing=True,
                              air_absorption=room["air_absorption"])
        if room["num_rays"] is not None:
            shoebox.set_ray_tracing(n_rays=room["num_rays"])
        for position in room["sources"]:
            shoebox.add_source(position)
        shoebox.add_microphone_array(np.asarray(room["microphones"], dtype=np.float64).T)  # [3, C]
        pra.random.seed(numpy=room["seed"], libroom=room["seed"])
        threads = pra.constants.get("num_threads")
        pra.constants.set("num_threads", 1)
        try:
            with warnings.catch_warnings(), vectorised_tail(), spectral_octave_bands(shoebox.octave_bands):
                warnings.simplefilter("ignore", UserWarning)
                shoebox.compute_rir()
        finally:
            pra.constants.set("num_threads", threads)
        responses = []
        for source in range(len(room["sources"])):
            per_microphone = [np.asarray(shoebox.rir[microphone][source], dtype=np.float64)
                              for microphone in range(len(room["microphones"]))]
            longest = max(response.shape[0] for response in per_microphone)
            stacked = np.zeros((len(per_microphone), longest))  # [C, K]
            for microphone, response in enumerate(per_microphone):
                stacked[microphone, :response.shape[0]] = response
            responses.append(stacked)
        return responses
