"""Ready-to-use separation from an exported model folder, for files of any length.

A model folder holds ``hyperparams.yaml`` (the trio, ``sample_rate``, ``num_spks`` and a
``pretrainer``) and ``encoder.ckpt``, ``masknet.ckpt``, ``decoder.ckpt``. It loads with
:class:`SPMambaSeparation` and, unchanged, with SpeechBrain's ``SepformerSeparation``.
:func:`export_model` writes one from a training experiment.
"""

import ctypes
import logging
import math
import os
import shutil
from typing import Optional, Tuple

import soundfile as sf
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml
from speechbrain.inference.interfaces import Pretrained
from tqdm import tqdm

from spmamba_sb.data.audio_io import UnreadableAudioError, read_audio, resample
from spmamba_sb.losses import best_permutations
from spmamba_sb.trio import separate

logger = logging.getLogger(__name__)

MODEL_FILES = ("encoder.ckpt", "masknet.ckpt", "decoder.ckpt")
#: Choices of ``output_rate``: the model's sample rate, or the input file's.
OUTPUT_RATES = ("model", "input")


def keep_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Let the C allocator keep freed blocks of up to ``limit_bytes`` for reuse (CPU speed).

    A forward pass on the CPU allocates and frees tensors of hundreds of MB over and over; by
    default glibc maps each one afresh from the system and unmaps it on free, so every one
    page-faults on first touch. Keeping them (``mallopt`` mmap and trim thresholds) made the
    published model's CPU inference about a fifth faster on a 2-core machine
    (``benchmarks/cpu_efficiency.py``); the process's memory then stays near its peak. It
    affects the whole process, so it is an opt-in (``spmamba-separate`` calls it on the CPU).

    Returns
    -------
    bool
        Whether the allocator took the setting (False where the C library is not glibc).

    Example
    -------
    >>> isinstance(keep_freed_memory(), bool)
    True
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    trim_threshold, mmap_threshold = -1, -3  # glibc's M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
    return bool(mallopt(mmap_threshold, limit_bytes)) and bool(mallopt(trim_threshold, limit_bytes))


class AudioInputError(ValueError):
    """An input file that cannot be separated; the message is ``<path>: <problem>``.

    Example
    -------
    >>> str(AudioInputError("mixture.wav: no samples"))
    'mixture.wav: no samples'
    """


class SPMambaSeparation(Pretrained):
    """SPMamba separation: ``from_hparams(source=DIR)``, then separate tensors or files.

    ``separate_file`` reads any format soundfile reads, mixes multi-channel audio to mono by
    averaging the channels, resamples to the model's rate (polyphase filter, see
    :func:`~spmamba_sb.data.audio_io.read_audio`), and separates recordings longer
    than ``chunk_seconds`` in overlapping chunks (see :meth:`separate_long`), so memory is
    bounded by the chunk length whatever the file's (``progress=True`` shows a tqdm bar over the
    chunks). Outputs are not rescaled; ``output_rate="input"`` resamples them back to the file's rate.

    Example
    -------
    >>> separator = SPMambaSeparation.from_hparams(source="model_dir")  # doctest: +SKIP
    >>> sources = separator.separate_file("mixture.wav")  # [1, L, S]  # doctest: +SKIP
    """

    MODULES_NEEDED = ["encoder", "masknet", "decoder"]
    HPARAMS_NEEDED = ["sample_rate", "num_spks"]

    def separate_batch(self, mix: torch.Tensor) -> torch.Tensor:
        """Separate a batch of mixtures at the model's rate: [B, L] -> [B, L, S]."""
        with torch.no_grad():
            return separate(mix.to(self.device), self.mods.encoder, self.mods.masknet, self.mods.decoder)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`separate_batch`."""
        return self.separate_batch(mix)

    def chunk_lengths(self, chunk_seconds: float, overlap_seconds: float) -> Tuple[int, int]:
        """Chunk and overlap lengths in samples at the model's rate, checked.

        Arguments
        ---------
        chunk_seconds : float
            Chunk length; at least one STFT frame.
        overlap_seconds : float
            Overlap of consecutive chunks; at least one sample, at most half a chunk.

        Returns
        -------
        tuple of int
            ``(chunk, overlap)`` in samples.

        Raises
        ------
        ValueError
            Naming the argument, its value and its allowed range.
        """
        rate, frame = self.hparams.sample_rate, self.mods.encoder.n_fft
        chunk = int(chunk_seconds * rate) if math.isfinite(chunk_seconds) else 0  # NaN and inf fail below
        overlap = int(overlap_seconds * rate) if math.isfinite(overlap_seconds) else 0
        if chunk < frame:
            raise ValueError(f"chunk_seconds must be at least one STFT frame ({frame / rate:g} s), got {chunk_seconds}")
        if not 1 <= overlap <= chunk // 2:
            raise ValueError(
                f"overlap_seconds must be between one sample ({1 / rate:g} s) and chunk_seconds / 2 "
                f"({chunk_seconds / 2:g} s), got {overlap_seconds}"
            )
        return chunk, overlap

    def separate_long(
        self, mix: torch.Tensor, chunk_seconds: float = 8.0, overlap_seconds: float = 2.0, progress: bool = False
    ) -> torch.Tensor:
        """Separate one long mixture in overlapping chunks: [L] -> [L, S].

        Each chunk is separated on its own (the model normalises it by its own std), its
        sources are put in the order that best matches the previous chunk on their
        overlap (largest summed correlation), and overlaps are cross-faded linearly.
        Memory is that of one chunk plus the [L, S] output.

        Arguments
        ---------
        mix : torch.Tensor
            [L] at the model's sample rate.
        chunk_seconds : float
            Chunk length; a mixture no longer than this is separated whole.
        overlap_seconds : float
            Overlap of consecutive chunks; at most half a chunk (see :meth:`chunk_lengths`).
        progress : bool
            Show a tqdm bar over the chunks on stderr (only when there is more than one).

        Returns
        -------
        torch.Tensor
            [L, S] on the CPU.
        """
        return self._separate_chunks(mix, *self.chunk_lengths(chunk_seconds, overlap_seconds), progress)

    def _separate_chunks(
        self, mix: torch.Tensor, chunk: int, overlap: int, progress: bool, label: Optional[str] = None
    ) -> torch.Tensor:
        """:meth:`separate_long` with lengths in samples, already checked, and the bar's
        ``label``: [L] -> [L, S]."""
        length = mix.shape[-1]
        if length <= chunk:
            return self.separate_batch(mix[None])[0].cpu()
        hop = chunk - overlap
        starts = list(range(0, length - chunk, hop)) + [length - chunk]
        output = torch.zeros(length, self.hparams.num_spks)
        weight = torch.zeros(length, 1)
        previous = None
        # leave=False: the bar is cleared when done, so the caller's result line takes its place
        for start in tqdm(starts, desc=label, unit="chunk", leave=False, disable=not progress):
            estimate = self.separate_batch(mix[None, start:start + chunk])[0].cpu()  # [chunk, S]
            if previous is not None:
                shared = previous[0] + previous[1].shape[0] - start  # samples shared with the last chunk
                estimate = _align(previous[1][-shared:], estimate[:shared], estimate)
                fade = torch.ones(chunk, 1)
                fade[:shared, 0] = torch.linspace(0, 1, shared + 2)[1:-1]
            else:
                fade = torch.ones(chunk, 1)
            if start != starts[-1]:
                next_shared = chunk - (min(start + hop, length - chunk) - start)
                fade[-next_shared:, 0] *= torch.linspace(1, 0, next_shared + 2)[1:-1]
            output[start:start + chunk] += fade * estimate
            weight[start:start + chunk] += fade
            previous = (start, estimate)
        return output / weight

    def output_sample_rate(self, path: str, output_rate: str = "model") -> int:
        """The sample rate of :meth:`separate_file`'s output for ``path``, in Hz.

        Arguments
        ---------
        path : str
            Audio file; read (its header only) when ``output_rate`` is ``"input"``.
        output_rate : str
            ``"model"``: the model's sample rate; ``"input"``: the file's.

        Returns
        -------
        int
            Sample rate in Hz.

        Raises
        ------
        ValueError
            If ``output_rate`` is not one of :data:`OUTPUT_RATES`.

        Example
        -------
        >>> separator.output_sample_rate("mixture_44k.wav", "input")  # doctest: +SKIP
        44100
        """
        _check_output_rate(output_rate)
        return self.hparams.sample_rate if output_rate == "model" else sf.info(path).samplerate

    def separate_file(
        self,
        path: str,
        chunk_seconds: float = 8.0,
        overlap_seconds: float = 2.0,
        progress: bool = False,
        output_rate: str = "model",
    ) -> torch.Tensor:
        """Separate an audio file: [1, L, S], all samples finite.

        Arguments
        ---------
        path : str
            Audio file (wav, flac, ...; any rate, any number of channels).
        chunk_seconds, overlap_seconds : float
            See :meth:`separate_long`.
        progress : bool
            Show a tqdm bar over the chunks on stderr, labelled with ``path``, when the file
            goes in more than one chunk.
        output_rate : str
            ``"model"``: L samples at the model's rate. ``"input"``: the sources resampled back
            to the file's rate, as many samples as the file has (see :meth:`output_sample_rate`).

        Returns
        -------
        torch.Tensor
            [1, L, S].

        Raises
        ------
        AudioInputError
            If the file cannot be read (missing, a folder, not audio, truncated or corrupt
            beyond decoding), has no samples, holds NaN/Inf samples, is shorter than one STFT
            frame at the model's rate, or separates to NaN/Inf samples.
        ValueError
            If ``chunk_seconds``, ``overlap_seconds`` or ``output_rate`` is out of range.

        Example
        -------
        >>> separator.separate_file("mixture_44k.wav", output_rate="input").shape  # doctest: +SKIP
        torch.Size([1, 441000, 2])
        """
        chunk, overlap = self.chunk_lengths(chunk_seconds, overlap_seconds)
        _check_output_rate(output_rate)
        try:
            mix = torch.from_numpy(read_audio(path, self.hparams.sample_rate)).float()  # [L]
        except UnreadableAudioError as error:
            raise AudioInputError(str(error)) from error
        try:
            sources = self._separate_chunks(mix, chunk, overlap, progress, label=path)  # [L, S]
        except ValueError as error:  # the model's own input checks: too short, beyond float32's range
            raise AudioInputError(f"{path}: {error}") from error
        if output_rate == "input":
            info = sf.info(path)
            back = resample(sources.T.numpy(), self.hparams.sample_rate, info.samplerate)  # [S, >= frames]
            sources = torch.from_numpy(back[:, :info.frames]).float().T  # [frames, S]
        if not torch.isfinite(sources).all():
            raise AudioInputError(f"{path}: the separated audio has NaN or Inf samples")
        return sources[None]


def _check_output_rate(output_rate: str) -> None:
    """Raise ``ValueError`` unless ``output_rate`` is one of :data:`OUTPUT_RATES`."""
    if output_rate not in OUTPUT_RATES:
        raise ValueError(f"output_rate must be one of {', '.join(map(repr, OUTPUT_RATES))}, got {output_rate!r}")


def _align(reference: torch.Tensor, candidate: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """Reorder ``estimate``'s sources [L, S] so ``candidate`` (its overlap) best matches
    ``reference`` (permutation-invariant SI-SNR, the training loss's PIT)."""
    order = best_permutations(reference[None], candidate[None])[0]
    return estimate[:, list(order)]


INFERENCE_YAML = """\
# SPMamba separation model, exported from a training experiment.
# Loads with spmamba_sb.inference.SPMambaSeparation.from_hparams(source=<this folder>)
# and with speechbrain.inference.separation.SepformerSeparation.from_hparams(...).
sample_rate: {sample_rate}
num_spks: {num_spks}

Encoder: !new:spmamba_sb.trio.Encoder
{encoder}
MaskNet: !new:spmamba_sb.trio.MaskNet
{masknet}
Decoder: !new:spmamba_sb.trio.Decoder
{decoder}
modules:
    encoder: !ref <Encoder>
    masknet: !ref <MaskNet>
    decoder: !ref <Decoder>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        encoder: !ref <Encoder>
        masknet: !ref <MaskNet>
        decoder: !ref <Decoder>
"""


def _yaml_args(arguments: dict) -> str:
    """Constructor arguments as an indented YAML mapping."""
    text = yaml.safe_dump(dict(arguments), default_flow_style=False, sort_keys=False)
    return "".join(f"    {line}\n" for line in text.splitlines())


def write_model_folder(out_folder: str, sample_rate: int, encoder, masknet, save_weights: bool = False) -> None:
    """Write a model folder's ``hyperparams.yaml`` for a trio (and its weights if asked).

    Arguments
    ---------
    out_folder : str
        Folder to write into (created if needed).
    sample_rate : int
        The model's sample rate.
    encoder : spmamba_sb.trio.Encoder
        Its STFT settings are the decoder's too.
    masknet : spmamba_sb.trio.MaskNet
        Its ``config`` is written out.
    save_weights : bool
        Also write the three ``.ckpt`` files from these modules.
    """
    os.makedirs(out_folder, exist_ok=True)
    stft = dict(n_fft=encoder.n_fft, hop_length=encoder.hop_length, win_length=encoder.win_length,
                window=encoder.window_name)
    text = INFERENCE_YAML.format(
        sample_rate=sample_rate, num_spks=masknet.num_spks,
        encoder=_yaml_args(stft), masknet=_yaml_args(masknet.config), decoder=_yaml_args(stft),
    )
    with open(os.path.join(out_folder, "hyperparams.yaml"), "w", encoding="utf-8") as handle:
        handle.write(text)
    if save_weights:  # the encoder and decoder have no parameters
        states = {"encoder.ckpt": encoder.state_dict(), "masknet.ckpt": masknet.state_dict(), "decoder.ckpt": {}}
        for name, state in states.items():
            torch.save(state, os.path.join(out_folder, name))


def export_model(experiment_folder: str, out_folder: str, checkpoint: Optional[str] = None) -> str:
    """Write a model folder from a training experiment.

    Arguments
    ---------
    experiment_folder : str
        The ``output_folder`` of a ``train.py`` run (holds ``hyperparams.yaml`` and ``save/``).
    out_folder : str
        Folder to write ``hyperparams.yaml`` and the three ``.ckpt`` files into.
    checkpoint : str, optional
        A ``CKPT+...`` folder to export; default: the one with the best validation SI-SNR.

    Returns
    -------
    str
        The checkpoint folder that was exported.

    Raises
    ------
    FileNotFoundError
        If the experiment has no ``hyperparams.yaml`` or no checkpoint.
    """
    hparams_path = os.path.join(experiment_folder, "hyperparams.yaml")
    if not os.path.isfile(hparams_path):
        raise FileNotFoundError(f"{experiment_folder!r} is not a training experiment (no hyperparams.yaml)")
    with open(hparams_path, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, {"output_folder": experiment_folder})
    if checkpoint is None:
        found = hparams["checkpointer"].find_checkpoint(min_key="si-snr")
        if found is None:
            raise FileNotFoundError(f"no checkpoint under {hparams['save_folder']!r}")
        checkpoint = str(found.path)
    write_model_folder(out_folder, hparams["sample_rate"], hparams["Encoder"], hparams["MaskNet"])
    for name in MODEL_FILES:
        shutil.copyfile(os.path.join(checkpoint, name), os.path.join(out_folder, name))
    logger.info("exported %s to %s", checkpoint, out_folder)
    return checkpoint
