"""Data preparation: the paper's Echo2Mix recipe and a download-free demo corpus.

Modules (none imports the model code; importing this package imports nothing heavy). Loudness,
rooms and speech synthesis need the ``data`` extra, imported when first used:

- :mod:`~spmamba_sb.data.extras`: importing the ``data`` extra's packages, or saying how to install them.
- :mod:`~spmamba_sb.data.audio_io`: reading with resampling, atomic float WAV writing.
- :mod:`~spmamba_sb.data.corpora`: LibriSpeech, WHAM! and DnR folders scanned into source lists.
- :mod:`~spmamba_sb.data.simulation_config`: every setting of the mixture simulation.
- :mod:`~spmamba_sb.data.timeline`: placing utterances and background clips on a track.
- :mod:`~spmamba_sb.data.loudness`: ITU-R BS.1770 loudness (pyloudnorm).
- :mod:`~spmamba_sb.data.room`: random shoebox rooms and their impulse responses (pyroomacoustics).
- :mod:`~spmamba_sb.data.mixing`: one mixture from sources, rooms and loudness targets.
- :mod:`~spmamba_sb.data.prepare`: splits, parallel workers, resume, wavs, JSON and CSV files.
- :mod:`~spmamba_sb.data.synth_speech`, :mod:`~spmamba_sb.data.sentences`,
  :mod:`~spmamba_sb.data.backgrounds`, :mod:`~spmamba_sb.data.demo_corpus`: the demo corpus.
- :mod:`~spmamba_sb.data.prepare_cli`: the ``spmamba-prepare-echo2mix`` and
  ``spmamba-prepare-demo`` commands.
- :mod:`~spmamba_sb.data.pipelines`: SpeechBrain datasets reading separation CSVs (training crops,
  whole utterances for validation and test).
"""
