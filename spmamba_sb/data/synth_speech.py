"""Speech synthesis with libespeak-ng, shipped by the PyPI package ``espeakng-loader``, through ctypes.

libespeak-ng keeps state between utterances in static variables (for example the phase of its
pitch flutter), so the same text would come out slightly differently depending on what was
spoken before in the process. To make every utterance a pure function of its settings, each call
loads a private copy of the shared library (a fresh instance with fresh statics), synthesises in
synchronous retrieval mode with a callback that collects the samples, and unloads it again. This
costs a few milliseconds per utterance.
"""

import ctypes
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional

import numpy as np

from spmamba_sb.data.extras import import_data_extra

logger = logging.getLogger(__name__)

#: espeak-ng language voices that read English text (accents); others would misread it.
ENGLISH_VOICES = ("en", "en-us", "en-029", "en-GB-scotland", "en-GB-x-gbclan", "en-GB-x-gbcwmd",
                  "en-GB-x-rp", "en-US-nyc")

# From espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POSITION_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAMETER_RATE, _PARAMETER_VOLUME, _PARAMETER_PITCH, _PARAMETER_RANGE, _PARAMETER_WORD_GAP = 1, 2, 3, 4, 7
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

try:
    from _ctypes import dlclose as _dlclose
except ImportError:  # not on Linux / macOS
    _dlclose = None


def _locate_espeak():
    espeakng_loader = import_data_extra("espeakng_loader", "EspeakSynthesizer")
    library, data = Path(espeakng_loader.get_library_path()), Path(espeakng_loader.get_data_path())
    if not library.is_file():
        raise RuntimeError(f"espeakng-loader's shared library is missing at '{library}'; reinstall espeakng-loader")
    return library, data


class EspeakSynthesizer:
    """Text to speech with espeak-ng: language voice (accent), voice variant, rate, pitch and pitch range.

    Every call is deterministic: the same arguments give the same samples, whatever was synthesised
    before (see the module docstring).

    Example
    -------
    >>> synthesizer = EspeakSynthesizer()
    >>> speech = synthesizer.synthesize("Hello there.", voice="en-us", variant="f2", rate=170, pitch=60)
    >>> synthesizer.sample_rate, speech.dtype, speech.shape[0] > synthesizer.sample_rate // 2
    (22050, dtype('float32'), True)
    """

    #: libespeak-ng's output sample rate in Hz.
    sample_rate = 22050

    def __init__(self):
        self.library_path, self.data_path = _locate_espeak()
        present = {path.name.lower() for path in (self.data_path / "lang").rglob("*") if path.is_file()}
        self._voices = [voice for voice in ENGLISH_VOICES if voice.lower() in present]
        self._variants = sorted(path.name for path in (self.data_path / "voices" / "!v").iterdir() if path.is_file())

    def voices(self) -> List[str]:
        """The English language voices present in the espeak-ng data (see ``ENGLISH_VOICES``)."""
        return list(self._voices)

    def variants(self) -> List[str]:
        """Names of the voice variants in the espeak-ng data (``voices/!v``), sorted."""
        return list(self._variants)

    def variant_gender(self, variant: str) -> str:
        """The gender the file of ``variant`` declares, lower-case (``"female"``, ``"male"``), or ``""`` if none.

        Example
        -------
        >>> synthesizer = EspeakSynthesizer()
        >>> synthesizer.variant_gender("f2"), synthesizer.variant_gender("m3"), synthesizer.variant_gender("klatt")
        ('female', 'male', '')
        """
        if variant not in self._variants:
            raise ValueError(f"variant={variant!r} is not in espeak-ng's voices/!v folder; "
                             f"choose from {self.variants()}")
        text = (self.data_path / "voices" / "!v" / variant).read_text(encoding="utf-8", errors="replace")
        for words in (line.split() for line in text.splitlines()):
            if len(words) > 1 and words[0].lower() == "gender":
                return words[1].lower()
        return ""

    def _load_private_copy(self) -> ctypes.CDLL:
        handle, copy = tempfile.mkstemp(prefix="spmamba-espeak-", suffix=".so")
        os.close(handle)
        try:
            shutil.copyfile(self.library_path, copy)
            return ctypes.CDLL(copy)
        except OSError as error:
            raise RuntimeError(f"could not load a copy of libespeak-ng from the temporary folder "
                               f"'{tempfile.gettempdir()}' ({error}); if it is mounted noexec, point TMPDIR "
                               f"to another folder") from error
        finally:
            os.unlink(copy)  # the loaded mapping stays valid

    def synthesize(self, text: str, voice: str = "en-us", variant: Optional[str] = None, rate: int = 175,
                   pitch: int = 50, pitch_range: int = 50, word_gap: int = 0, seed: int = 0) -> np.ndarray:
        """Speak ``text``.

        Arguments
        ---------
        text : str
            UTF-8 text.
        voice : str
            Language voice, one of :meth:`voices` (English accents).
        variant : str, optional
            Voice variant, one of :meth:`variants` (for example ``"m3"``, ``"f2"``, ``"klatt"``).
        rate : int
            Speaking rate in words per minute, 80 to 450.
        pitch : int
            Base pitch, 0 to 99 (50 normal).
        pitch_range : int
            Pitch variation, 0 (monotone) to 99.
        word_gap : int
            Extra pause between words in units of 10 ms, 0 to 50.
        seed : int
            Seed of espeak-ng's random generator (used by some variants, such as breathy ones).

        Returns
        -------
        np.ndarray
            [L] float32 samples in [-1, 1] at :attr:`sample_rate`.

        Raises
        ------
        ValueError
            On an unknown voice or variant, an out-of-range setting, or empty text.
        RuntimeError
            If libespeak-ng fails.
        """
        if voice not in self._voices:
            raise ValueError(f"voice={voice!r} is not an available English voice; choose from {self._voices}")
        if variant is not None and variant not in self._variants:
            raise ValueError(f"variant={variant!r} is not in espeak-ng's voices/!v folder; "
                             f"choose from {self.variants()}")
        for name, value, low, high in (("rate", rate, 80, 450), ("pitch", pitch, 0, 99),
                                       ("pitch_range", pitch_range, 0, 99), ("word_gap", word_gap, 0, 50)):
            if not (isinstance(value, (int, np.integer)) and low <= value <= high):
                raise ValueError(f"{name}={value!r} must be an integer from {low} to {high}")
        if not text.strip():
            raise ValueError("text is empty")

        library = self._load_private_copy()
        chunks: List[np.ndarray] = []

        def collect(samples, count, events):
            if samples and count > 0:
                chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
            return 0

        callback = _SYNTH_CALLBACK(collect)
        initialised = False
        try:
            library.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            library.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            library.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
            library.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
            library.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                             ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
            rate_hz = library.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(),
                                                _INITIALIZE_DONT_EXIT)
            if rate_hz != self.sample_rate:
                raise RuntimeError(f"libespeak-ng failed to start (returned {rate_hz}) with data at '{self.data_path}'")
            initialised = True
            library.espeak_SetSynthCallback(callback)
            library.espeak_ng_SetRandSeed(int(seed) % (2 ** 31))
            name = voice if variant is None else f"{voice}+{variant}"
            if library.espeak_SetVoiceByName(name.encode()) != 0:
                raise RuntimeError(f"libespeak-ng could not select voice {name!r}")
            for parameter, value in ((_PARAMETER_RATE, rate), (_PARAMETER_VOLUME, 100), (_PARAMETER_PITCH, pitch),
                                     (_PARAMETER_RANGE, pitch_range), (_PARAMETER_WORD_GAP, word_gap)):
                library.espeak_SetParameter(parameter, int(value), 0)
            encoded = text.encode("utf-8") + b"\0"
            status = library.espeak_Synth(encoded, len(encoded), 0, _POSITION_CHARACTER, 0, _CHARS_UTF8, None, None)
            library.espeak_Synchronize()
            if status != 0:
                raise RuntimeError(f"libespeak-ng failed to synthesise (error {status})")
        finally:
            if initialised:
                library.espeak_Terminate()
            if _dlclose is not None:
                _dlclose(library._handle)
        if not chunks:
            raise RuntimeError(f"libespeak-ng produced no audio for {text!r}")
        return (np.concatenate(chunks).astype(np.float32) / 32768.0)
