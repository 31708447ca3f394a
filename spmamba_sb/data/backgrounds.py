"""Synthetic backgrounds for the demo corpus: noise in place of WHAM!, music and sound effects in place of DnR.

Everything is generated from a random generator, so the same seed gives the same audio:

- noise: coloured noise (random spectral slope and resonance), slowly modulated, sometimes with
  mains hum or a murmur of syllable-rate modulated bands;
- music: a chord progression in a random key, scale and tempo, played by additive-synthesis pad,
  bass and melody voices, with a simple drum pattern most of the time;
- sound effects: sparse events (chirps, knocks, whooshes, beeps, sirens, bells) separated by silence.
"""

from typing import Callable, Dict

import numpy as np


def _shaped_noise(rng: np.random.Generator, num_samples: int, sample_rate: int, slope: float,
                  centre: float, bandwidth: float, boost_db: float) -> np.ndarray:
    """Gaussian noise with power falling as 1/f^slope and a bump of ``boost_db`` around ``centre`` Hz."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    frequencies = np.fft.rfftfreq(num_samples, 1.0 / sample_rate)
    shape = np.maximum(frequencies, 20.0) ** (-slope / 2)
    octaves = np.log2(np.maximum(frequencies, 1.0) / centre)
    shape *= 10 ** (boost_db / 20 * np.exp(-0.5 * (octaves / bandwidth) ** 2))
    noise = np.fft.irfft(spectrum * shape, n=num_samples)
    return noise / (np.std(noise) + 1e-12)


def _envelope(num_samples: int, sample_rate: int, attack: float, decay: float) -> np.ndarray:
    """Linear attack, then exponential decay with time constant ``decay`` seconds."""
    time = np.arange(num_samples) / sample_rate
    attack_samples = max(1, int(attack * sample_rate))
    rise = np.minimum(1.0, np.arange(num_samples) / attack_samples)
    return rise * np.exp(-np.maximum(time - attack, 0.0) / max(decay, 1e-3))


def _note(frequency: float, num_samples: int, sample_rate: int, harmonics: np.ndarray, attack: float,
          decay: float, vibrato: float = 0.0) -> np.ndarray:
    """Additive-synthesis note: harmonic amplitudes ``harmonics`` (partials above Nyquist dropped)."""
    time = np.arange(num_samples) / sample_rate
    phase = 2 * np.pi * frequency * (time + vibrato * np.sin(2 * np.pi * 5.0 * time) / (2 * np.pi * 5.0))
    note = np.zeros(num_samples)
    for order, amplitude in enumerate(harmonics, start=1):
        if order * frequency * (1 + vibrato) < sample_rate / 2:
            note += amplitude * np.sin(order * phase)
    return note * _envelope(num_samples, sample_rate, attack, decay)


def _add(track: np.ndarray, sound: np.ndarray, start: int) -> None:
    end = min(track.shape[0], start + sound.shape[0])
    if end > start:
        track[start:end] += sound[:end - start]


_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "pentatonic": (0, 2, 4, 7, 9),
           "dorian": (0, 2, 3, 5, 7, 9, 10)}


def _midi_to_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


class BackgroundSynthesizer:
    """Generates noise, music-like and sound-effect backgrounds.

    Arguments
    ---------
    sample_rate : int
        Sample rate in Hz.

    Example
    -------
    >>> synthesizer = BackgroundSynthesizer(8000)
    >>> rng = np.random.default_rng(0)
    >>> [synthesizer.generate(kind, rng, 1.5).shape for kind in ("noise", "music", "sfx")]
    [(12000,), (12000,), (12000,)]
    """

    def __init__(self, sample_rate: int):
        if not (isinstance(sample_rate, int) and sample_rate >= 4000):
            raise ValueError(f"sample_rate={sample_rate!r} must be an integer of at least 4000 Hz")
        self.sample_rate = sample_rate

    def generate(self, kind: str, rng: np.random.Generator, duration: float) -> np.ndarray:
        """A background of one kind.

        Arguments
        ---------
        kind : str
            ``"noise"``, ``"music"`` or ``"sfx"``.
        rng : np.random.Generator
            Source of every random choice.
        duration : float
            Seconds.

        Returns
        -------
        np.ndarray
            [L] float64, peak at most 0.9.
        """
        makers: Dict[str, Callable] = {"noise": self.noise, "music": self.music, "sfx": self.sound_effects}
        if kind not in makers:
            raise ValueError(f"kind must be one of {sorted(makers)}, got {kind!r}")
        if duration <= 0:
            raise ValueError(f"duration={duration!r} must be positive")
        audio = makers[kind](rng, int(round(duration * self.sample_rate)))
        peak = np.max(np.abs(audio))
        return audio * (0.9 / peak) if peak > 0.9 else audio

    def noise(self, rng: np.random.Generator, num_samples: int) -> np.ndarray:
        """Coloured, slowly modulated noise, sometimes with hum or murmur; RMS 0.05. Returns [L]."""
        rate = self.sample_rate
        time = np.arange(num_samples) / rate
        noise = _shaped_noise(rng, num_samples, rate, slope=rng.uniform(0.0, 2.0),
                              centre=rng.uniform(150.0, min(3000.0, rate / 3)), bandwidth=rng.uniform(0.5, 2.0),
                              boost_db=rng.uniform(0.0, 15.0))
        noise *= 1 + rng.uniform(0.0, 0.5) * np.sin(2 * np.pi * rng.uniform(0.05, 1.0) * time
                                                     + rng.uniform(0, 2 * np.pi))
        if rng.uniform() < 0.3:
            mains = rng.choice([50.0, 60.0])
            hum = sum(np.sin(2 * np.pi * mains * order * time + rng.uniform(0, 2 * np.pi)) / order ** 1.5
                      for order in range(1, 6))
            noise += rng.uniform(0.1, 0.6) * hum
        if rng.uniform() < 0.3:
            for _ in range(int(rng.integers(2, 6))):
                centre = rng.uniform(300.0, min(2500.0, rate / 3))
                band = _shaped_noise(rng, num_samples, rate, slope=1.0, centre=centre, bandwidth=0.4, boost_db=20.0)
                syllable_rate = rng.uniform(3.0, 6.0)
                syllables = np.clip(np.sin(2 * np.pi * syllable_rate * time + rng.uniform(0, 2 * np.pi)), 0, None)
                noise += rng.uniform(0.2, 0.6) * band * syllables
        return 0.05 * noise / (np.std(noise) + 1e-12)

    def music(self, rng: np.random.Generator, num_samples: int) -> np.ndarray:
        """Pad, bass, melody and (usually) drums over a four-chord progression. Returns [L]."""
        rate = self.sample_rate
        track = np.zeros(num_samples)
        beat = 60.0 / rng.uniform(70.0, 150.0)
        beat_samples = int(beat * rate)
        scale = _SCALES[list(_SCALES)[int(rng.integers(len(_SCALES)))]]
        root = int(rng.integers(40, 56))
        degrees = rng.integers(0, len(scale), size=4)
        timbres = [rng.uniform(0.2, 1.0, size=8) / np.arange(1, 9) ** rng.uniform(0.8, 2.0) for _ in range(3)]
        use_drums = rng.uniform() < 0.75
        melody_position = int(rng.integers(0, len(scale)))

        def pitch(degree: int, octave: int) -> float:
            return _midi_to_hz(root + 12 * (octave + degree // len(scale)) + scale[degree % len(scale)])

        num_bars = num_samples // (4 * beat_samples) + 1
        for bar in range(num_bars):
            bar_start = bar * 4 * beat_samples
            degree = int(degrees[bar % 4])
            for offset in (0, 2, 4):  # pad: a triad held for the bar
                _add(track, 0.12 * _note(pitch(degree + offset, 1), 4 * beat_samples, rate, timbres[0],
                                         attack=0.2, decay=4 * beat), bar_start)
            for step in range(4):  # bass: the root on every beat
                _add(track, 0.3 * _note(pitch(degree, -1), beat_samples, rate, timbres[1], attack=0.005,
                                        decay=0.3 * beat), bar_start + step * beat_samples)
            position = bar_start
            while position < bar_start + 4 * beat_samples:  # melody: a random walk on the scale
                length = int(beat_samples * rng.choice([0.5, 0.5, 1.0, 1.5]))
                melody_position = int(np.clip(melody_position + rng.integers(-2, 3), 0, 2 * len(scale)))
                if rng.uniform() < 0.85:
                    _add(track, 0.2 * _note(pitch(melody_position, 1), length, rate, timbres[2], attack=0.01,
                                            decay=0.5 * length / rate, vibrato=0.004), position)
                position += length
            if use_drums:
                for step in range(8):
                    start = bar_start + step * beat_samples // 2
                    if step % 4 == 0:
                        length = int(0.25 * rate)
                        time = np.arange(length) / rate
                        kick = np.sin(2 * np.pi * (50 * time + 100 * 0.04 * (1 - np.exp(-time / 0.04))))
                        _add(track, 0.5 * kick * np.exp(-time / 0.08), start)
                    if step % 4 == 2:
                        length = int(0.15 * rate)
                        snare = _shaped_noise(rng, length, rate, 0.5, min(2000.0, rate / 4), 1.0, 6.0)
                        _add(track, 0.2 * snare * _envelope(length, rate, 0.001, 0.04), start)
                    hat = _shaped_noise(rng, int(0.05 * rate), rate, 0.0, rate / 3, 0.5, 10.0)
                    _add(track, 0.05 * hat * _envelope(hat.shape[0], rate, 0.001, 0.01), start)
        return track

    def sound_effects(self, rng: np.random.Generator, num_samples: int) -> np.ndarray:
        """Sparse events (chirp, knock, whoosh, beeps, siren, bell) with silences between. Returns [L]."""
        rate = self.sample_rate
        nyquist = rate / 2
        track = np.zeros(num_samples)
        position = int(rng.uniform(0.0, 1.0) * rate)
        while position < num_samples:
            kind = ("chirp", "knock", "whoosh", "beeps", "siren", "bell")[int(rng.integers(6))]
            length = int(rng.uniform(0.2, 1.5) * rate)
            time = np.arange(length) / rate
            if kind == "chirp":
                low, high = sorted(rng.uniform(200.0, 0.8 * nyquist, size=2))
                frequency = low * (high / low) ** (time / time[-1]) if rng.uniform() < 0.5 else \
                    high * (low / high) ** (time / time[-1])
                event = np.sin(2 * np.pi * np.cumsum(frequency) / rate) * np.hanning(length)
            elif kind == "knock":
                event = np.zeros(length)
                for hit in range(int(rng.integers(1, 5))):
                    modes = sum(np.sin(2 * np.pi * rng.uniform(100.0, min(2000.0, 0.8 * nyquist)) * time)
                                * np.exp(-time / rng.uniform(0.02, 0.08)) for _ in range(3))
                    _add(event, modes, int(hit * rng.uniform(0.1, 0.25) * rate))
            elif kind == "whoosh":
                event = _shaped_noise(rng, length, rate, rng.uniform(0.5, 2.0), rng.uniform(300.0, 0.6 * nyquist),
                                      1.0, 10.0) * np.hanning(length) ** 2
            elif kind == "beeps":
                event = np.zeros(length)
                tone = rng.uniform(400.0, min(2500.0, 0.3 * nyquist))
                beep_length = int(rng.uniform(0.06, 0.2) * rate)
                beep_time = np.arange(beep_length) / rate
                beep = sum(np.sin(2 * np.pi * order * tone * beep_time) / order for order in (1, 3, 5))
                for start in range(0, length - beep_length, 2 * beep_length):
                    _add(event, beep * np.hanning(beep_length) ** 0.2, start)
            elif kind == "siren":
                carrier = rng.uniform(500.0, min(1200.0, 0.3 * nyquist))
                frequency = carrier + rng.uniform(100.0, 400.0) * np.sin(2 * np.pi * rng.uniform(0.5, 3.0) * time)
                event = np.sin(2 * np.pi * np.cumsum(frequency) / rate) * np.hanning(length) ** 0.3
            else:  # bell: inharmonic partials with a long decay
                fundamental = rng.uniform(300.0, min(1500.0, 0.1 * nyquist))
                event = sum(np.sin(2 * np.pi * ratio * fundamental * time) * np.exp(-time * ratio / 0.6) / ratio
                            for ratio in (1.0, 2.76, 5.4, 8.93) if ratio * fundamental < nyquist)
                event *= _envelope(length, rate, 0.002, 10.0)
            peak = np.max(np.abs(event))
            if peak > 0:
                _add(track, rng.uniform(0.3, 0.9) * event / peak, position)
            position += length + int(rng.uniform(0.3, 2.5) * rate)
        return track
