"""Ready-to-use separation from a model folder, for files of any length.

A model folder (see :mod:`spmamba_sb.model_folder`) holds ``hyperparams.yaml`` (the trio,
``sample_rate``, ``num_spks`` and a ``pretrainer``) and ``encoder.ckpt``, ``masknet.ckpt``,
``decoder.ckpt``. It loads with :class:`SPMambaSeparation`, which first checks that
``hyperparams.yaml`` builds only allow-listed classes
(:func:`~spmamba_sb.model_folder.check_hyperparams`), and, unchanged, with SpeechBrain's
``SepformerSeparation``, which builds whatever the file names.
"""

from typing import Any, Tuple

import soundfile as sf
import torch
import spmamba_sb.torch_pair  # noqa: F401  before SpeechBrain: a torchaudio that does not load is named
from speechbrain.inference.interfaces import Pretrained

from spmamba_sb.chunking import chunk_lengths, separate_in_chunks
from spmamba_sb.data.audio_io import UnreadableAudioError, read_audio, resample
from spmamba_sb.model_folder import check_hyperparams
from spmamba_sb.trio import separate

#: Choices of ``output_rate``: the model's sample rate, or the input file's.
OUTPUT_RATES = ("model", "input")


class AudioInputError(ValueError):
    """An input file that cannot be separated; the message is ``<path>: <problem>``.

    Example
    -------
    >>> str(AudioInputError("mixture.wav: no samples"))
    'mixture.wav: no samples'
    """


class SPMambaSeparation(Pretrained):
    """SPMamba separation: ``from_hparams(source=DIR)``, then separate tensors or files.

    ``separate_file`` reads any format soundfile reads, takes the first channel (the reference
    microphone, as training does) of multi-channel audio, resamples to the model's rate (polyphase
    filter; see :func:`~spmamba_sb.data.audio_io.read_audio`, which logs the first multi-channel
    file once at INFO), and separates recordings longer
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

    @classmethod
    def from_hparams(cls, source: str, hparams_file: str = "hyperparams.yaml", *, trust_code: bool = False,
                     **kwargs: Any) -> "SPMambaSeparation":
        """Load a model folder, after checking that its ``hyperparams.yaml`` builds only
        allow-listed classes (see :func:`~spmamba_sb.model_folder.check_hyperparams`).

        Arguments
        ---------
        source, hparams_file : str
            The model folder and its hyperparameter file, as
            :func:`~spmamba_sb.model_folder.check_hyperparams` takes them.
        trust_code : bool
            Skip the check and build whatever the file names (run its code): only for a
            folder you trust, as SpeechBrain's own ``from_hparams`` always does.
        **kwargs
            ``savedir``, ``run_opts``, ... as SpeechBrain's ``Pretrained.from_hparams``.

        Returns
        -------
        SPMambaSeparation
            The loaded separator.

        Raises
        ------
        spmamba_sb.model_trust.UntrustedModelError
            If ``trust_code`` is off and the file names code outside the allow-list; nothing
            was built.

        Example
        -------
        >>> folder = getfixture("tmp_path")
        >>> _ = (folder / "hyperparams.yaml").write_text("pwn: !new:subprocess.Popen [[touch, marker]]\\n")
        >>> SPMambaSeparation.from_hparams(source=str(folder))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
          ...
        spmamba_sb.model_trust.UntrustedModelError: .../hyperparams.yaml line 1: !new:subprocess.Popen is not ...
        """
        if not trust_code:
            fetch_options = {key: kwargs[key] for key in ("savedir", "local_strategy", "fetch_config") if key in kwargs}
            check_hyperparams(source, hparams_file, **fetch_options)
        return super().from_hparams(source, hparams_file, **kwargs)

    def separate_batch(self, mix: torch.Tensor) -> torch.Tensor:
        """Separate a batch of mixtures at the model's rate: [B, L] -> [B, L, S]."""
        with torch.no_grad():
            return separate(mix.to(self.device), self.mods.encoder, self.mods.masknet, self.mods.decoder)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`separate_batch`."""
        return self.separate_batch(mix)

    def chunk_lengths(self, chunk_seconds: float, overlap_seconds: float) -> Tuple[int, int]:
        """:func:`~spmamba_sb.chunking.chunk_lengths` at the model's rate, a chunk at least one STFT
        frame: ``(chunk, overlap)`` in samples, or ``ValueError`` naming the argument out of range."""
        return chunk_lengths(chunk_seconds, overlap_seconds, self.hparams.sample_rate, self.mods.encoder.n_fft)

    def separate_long(
        self, mix: torch.Tensor, chunk_seconds: float = 8.0, overlap_seconds: float = 2.0, progress: bool = False
    ) -> torch.Tensor:
        """Separate one long mixture in overlapping chunks: [L] -> [L, S].

        See :func:`~spmamba_sb.chunking.separate_in_chunks`: each chunk is separated on its
        own (the model normalises it by its own std), aligned with the previous one by PIT
        on their overlap and cross-faded. Memory is that of one chunk plus the [L, S] output.

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
        chunk, overlap = self.chunk_lengths(chunk_seconds, overlap_seconds)
        return separate_in_chunks(self.separate_batch, mix, chunk, overlap, progress)

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
            Audio file (wav, flac, ...; any rate, any number of channels: a multi-channel file
            is read at its first channel, the reference microphone).
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
            mix = torch.from_numpy(read_audio(path, self.hparams.sample_rate, channels="first")).float()  # [L]
        except UnreadableAudioError as error:
            raise AudioInputError(str(error)) from error
        try:
            sources = separate_in_chunks(self.separate_batch, mix, chunk, overlap, progress, label=path)  # [L, S]
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
