"""The export commands: a model folder (see :mod:`spmamba_sb.model_folder`) from a training
experiment, or from a checkpoint of the reference implementation.

Each command writes the folder's four files all or none, never over a file it reads, and
replaces existing files only when asked (:func:`~spmamba_sb.outputs.check_outputs`).
"""

import logging
import os
from typing import Any, Dict, Optional, Tuple, Union

import yaml
import spmamba_sb.torch_pair  # noqa: F401  before SpeechBrain: a torchaudio that does not load is named
from speechbrain.utils.checkpoints import Checkpointer

from spmamba_sb.checkpoints import MASKNET_AVERAGE
from spmamba_sb.model_folder import (HYPERPARAMS_FILE, MODEL_FILES, model_folder_files, model_yaml, read_experiment,
                                     write_files, write_model_folder)
from spmamba_sb.models.reference_weights import load_reference_weights, read_reference_checkpoint, reference_settings
from spmamba_sb.outputs import check_outputs
from spmamba_sb.trio import Encoder, MaskNet

logger = logging.getLogger(__name__)


def export_model(experiment_folder: str, out_folder: str, checkpoint: Optional[str] = None,
                 overwrite: bool = False) -> str:
    """Write a model folder from a training experiment.

    Its four files are written all or none, and never over one of the files read: the
    experiment's ``hyperparams.yaml`` (so ``out_folder`` is never the experiment) or the
    checkpoint's weights.

    Arguments
    ---------
    experiment_folder : str
        The ``output_folder`` of a ``train.py`` run (holds ``hyperparams.yaml`` and ``save/``).
    out_folder : str
        Folder to write ``hyperparams.yaml`` and the three ``.ckpt`` files into.
    checkpoint : str, optional
        A ``CKPT+...`` folder to export; default: the one with the best validation SI-SNR. Where
        it holds ``masknet_average.ckpt`` (a run with ``ema_decay``), that average of the mask net's
        weights is exported as its weights: the weights the run validated and tested.
    overwrite : bool
        Replace the files of an existing model folder there.

    Returns
    -------
    str
        The checkpoint folder that was exported.

    Raises
    ------
    FileNotFoundError
        If the experiment has no ``hyperparams.yaml`` or no checkpoint.
    spmamba_sb.outputs.OutputExistsError
        If a file to write exists and ``overwrite`` is off.
    ValueError
        If its hyperparameters do not define the trio (see
        :func:`~spmamba_sb.model_folder.read_experiment`), or a file to write is one of the
        files read.

    Example
    -------
    >>> export_model("results/spmamba-8k/1234", "model")  # doctest: +SKIP
    'results/spmamba-8k/1234/save/CKPT+2024-05-01+12-00-00+00'
    """
    experiment = read_experiment(experiment_folder)
    if checkpoint is None:
        found = Checkpointer(experiment["save_folder"]).find_checkpoint(min_key="si-snr")
        if found is None:
            raise FileNotFoundError(f"no checkpoint under {experiment['save_folder']!r}")
        checkpoint = str(found.path)
    weights = [os.path.join(checkpoint, name) for name in MODEL_FILES]
    average = weight_average(checkpoint)
    if average is not None:  # trained with ema_decay: the weight average is the model
        weights[MODEL_FILES.index("masknet.ckpt")] = average
    inputs = [experiment_folder, os.path.join(experiment_folder, HYPERPARAMS_FILE), checkpoint, *weights]
    check_outputs(model_folder_files(out_folder), inputs, overwrite)
    contents: Dict[str, Union[str, bytes]] = {
        HYPERPARAMS_FILE: model_yaml(experiment["sample_rate"], experiment["stft"], experiment["masknet"])}
    for name, path in zip(MODEL_FILES, weights):
        with open(path, "rb") as handle:
            contents[name] = handle.read()
    write_files(out_folder, contents)
    logger.info("exported %s%s to %s", checkpoint, "" if average is None else " (the mask net's weight average)",
                out_folder)
    return checkpoint


def weight_average(checkpoint: str) -> Optional[str]:
    """The path of a checkpoint's weight average of the mask net (a run with ``ema_decay``), or
    None where it has none.

    Example
    -------
    >>> weight_average(str(getfixture("tmp_path"))) is None
    True
    """
    average = os.path.join(checkpoint, f"{MASKNET_AVERAGE}.ckpt")
    return average if os.path.isfile(average) else None


def read_reference_config(path: str) -> Tuple[Dict[str, Any], Optional[int]]:
    """The model keywords and sample rate in a reference implementation's YAML config.

    Arguments
    ---------
    path : str
        A config of the reference training code (``audionet.audionet_config`` and
        ``datamodule.data_config.sample_rate``).

    Returns
    -------
    tuple
        ``(audionet_config, sample_rate)``; the rate is None when the file has none.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it has no ``audionet.audionet_config`` mapping.

    Example
    -------
    >>> path = getfixture("tmp_path") / "conf.yml"
    >>> _ = path.write_text("audionet:\\n  audionet_config: {n_fft: 256, stride: 64}\\n"
    ...                     "datamodule:\\n  data_config: {sample_rate: 8000}\\n")
    >>> read_reference_config(str(path))
    ({'n_fft': 256, 'stride': 64}, 8000)
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no config file at {path!r}")
    with open(path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle) or {}
    model = (config.get("audionet") or {}).get("audionet_config") if isinstance(config, dict) else None
    if not isinstance(model, dict):
        raise ValueError(f"{path}: no audionet.audionet_config mapping (not a reference config)")
    rate = ((config.get("datamodule") or {}).get("data_config") or {}).get("sample_rate")
    return model, None if rate is None else int(rate)


def export_reference(checkpoint: str, out_folder: str, config: Optional[str] = None, overwrite: bool = False) -> str:
    """Write a model folder from a checkpoint of the reference implementation.

    Its four files are written all or none, and never over the checkpoint or the config.

    Arguments
    ---------
    checkpoint : str
        A raw state dict, a release ``{model_name, state_dict, ...}`` or a Lightning checkpoint.
    out_folder : str
        Folder to write ``hyperparams.yaml`` and the three ``.ckpt`` files into.
    config : str, optional
        The reference's YAML config; without it the settings the weights do not hold are the
        published presets (see :func:`~spmamba_sb.models.reference_weights.reference_settings`).
    overwrite : bool
        Replace the files of an existing model folder there.

    Returns
    -------
    str
        One line saying where the settings came from.

    Raises
    ------
    FileNotFoundError
        If a file is missing.
    spmamba_sb.outputs.OutputExistsError
        If a file to write exists and ``overwrite`` is off.
    ValueError
        If the file is not a reference checkpoint, the config contradicts the weights, or a file
        to write is the checkpoint or the config.

    Example
    -------
    >>> export_reference("wsj0-2mix/best_model.pth", "model")  # doctest: +SKIP
    'mamba network of 6 blocks, n_fft 256, 2 sources from the weights' shapes; ...'
    """
    check_outputs(model_folder_files(out_folder), [checkpoint] + ([config] if config else []), overwrite)
    try:
        state = read_reference_checkpoint(checkpoint)
        model_config, rate = read_reference_config(config) if config else (None, None)
        settings, summary = reference_settings(state, model_config, rate)
        masknet = MaskNet(**settings["masknet"])
        load_reference_weights(masknet, state)
    except (KeyError, TypeError) as error:  # not a reference state dict
        raise ValueError(f"{checkpoint}: {error.args[0] if error.args else error}") from error
    write_model_folder(out_folder, settings["sample_rate"], Encoder(**settings["stft"]), masknet, save_weights=True)
    logger.info("exported %s to %s: %s", checkpoint, out_folder, summary)
    return summary
