"""Model folders: ``hyperparams.yaml`` and the trio's weights, written from a training experiment
or from a checkpoint of the reference implementation.

A model folder loads with :class:`~spmamba_sb.inference.SPMambaSeparation` and, unchanged, with
SpeechBrain's ``SepformerSeparation``.
"""

import functools
import inspect
import io
import logging
import os
import pydoc
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import ruamel.yaml
import torch
import yaml
from hyperpyyaml import resolve_references
from speechbrain.utils.checkpoints import Checkpointer

from spmamba_sb.outputs import atomic_outputs, check_outputs, write_file
from spmamba_sb.models.gridnet import GridNetMaskNet
from spmamba_sb.models.reference_weights import load_reference_weights, read_reference_checkpoint, reference_settings
from spmamba_sb.nnet.stft import STFT_SETTINGS
from spmamba_sb.trio import Encoder, MaskNet, upgrade_masknet_arguments

logger = logging.getLogger(__name__)

MODEL_FILES = ("encoder.ckpt", "masknet.ckpt", "decoder.ckpt")
NAME_TAG = "!name:"

INFERENCE_YAML = """\
# SPMamba separation model.
# Loads with spmamba_sb.inference.SPMambaSeparation.from_hparams(source=<this folder>)
# and with speechbrain.inference.separation.SepformerSeparation.from_hparams(...).
sample_rate: {sample_rate}
num_spks: {num_spks}

Encoder: !new:spmamba_sb.trio.Encoder
{stft}
MaskNet: !new:spmamba_sb.trio.MaskNet
{masknet}
Decoder: !new:spmamba_sb.trio.Decoder
{stft}
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


def model_yaml(sample_rate: int, stft: Mapping[str, Any], masknet: Mapping[str, Any]) -> str:
    """A model folder's ``hyperparams.yaml``.

    Arguments
    ---------
    sample_rate : int
        The model's sample rate.
    stft : mapping
        Arguments of the :class:`~spmamba_sb.trio.Encoder` (and the decoder): ``n_fft``, ...
    masknet : mapping
        Arguments of the :class:`~spmamba_sb.trio.MaskNet`; its ``sequence_layer`` (a class, or
        a ``functools.partial`` of one with keyword arguments) is written as ``!name:``.

    Returns
    -------
    str
        The YAML text.

    Raises
    ------
    ValueError
        If a callable argument cannot be written as ``!name:`` (see :func:`yaml_arguments`).

    Example
    -------
    >>> text = model_yaml(8000, {"n_fft": 256, "hop_length": 64}, {"num_spks": 2, "n_fft": 256})
    >>> text.splitlines()[3:5]
    ['sample_rate: 8000', 'num_spks: 2']
    """
    num_spks = masknet.get("num_spks", inspect.signature(GridNetMaskNet).parameters["num_spks"].default)
    return INFERENCE_YAML.format(sample_rate=sample_rate, num_spks=num_spks, stft=yaml_arguments(stft),
                                 masknet=yaml_arguments(masknet))


def yaml_arguments(arguments: Mapping[str, Any], indent: str = "    ") -> str:
    """Constructor arguments as an indented HyperPyYAML mapping.

    A callable argument, a class or function or a ``functools.partial`` of one with keyword
    arguments, is written as ``!name:`` with its keyword arguments under it.

    Arguments
    ---------
    arguments : Mapping
        Keyword -> plain value (bool, int, float, str, list, dict, None) or callable.
    indent : str
        Put before every line of the top level.

    Returns
    -------
    str
        The lines, each ending with a newline.

    Raises
    ------
    ValueError
        If a callable is not importable by its name, or a partial has positional arguments.

    Example
    -------
    >>> from functools import partial
    >>> from spmamba_sb.nnet.sequence import BLSTM
    >>> print(yaml_arguments({"num_spks": 2, "sequence_layer": partial(BLSTM, hidden_dim=64)}), end="")
        num_spks: 2
        sequence_layer: !name:spmamba_sb.nnet.sequence.BLSTM
            hidden_dim: 64
    """
    lines: List[str] = []
    for key, value in arguments.items():
        if callable(value):
            target = value.func if isinstance(value, functools.partial) else value
            name = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"
            if pydoc.locate(name) is not target or (isinstance(value, functools.partial) and value.args):
                raise ValueError(f"{key}={value!r} cannot be written to hyperparams.yaml: give a class, or a "
                                 "functools.partial of one with keyword arguments only")
            keywords = value.keywords if isinstance(value, functools.partial) else {}
            lines.append(f"{indent}{key}: {NAME_TAG}{name}\n" + yaml_arguments(keywords, indent + "    "))
        else:
            text = yaml.safe_dump({key: value}, default_flow_style=False, sort_keys=False)
            lines.extend(f"{indent}{line}\n" for line in text.splitlines())
    return "".join(lines)


def write_model_folder(out_folder: str, sample_rate: int, encoder: Encoder, masknet: MaskNet,
                       save_weights: bool = False) -> None:
    """Write a model folder's ``hyperparams.yaml`` for a trio (and its weights if asked).

    The files are written all or none (:func:`~spmamba_sb.outputs.atomic_outputs`); existing
    ones are replaced. :func:`export_model` and :func:`export_reference` check first.

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

    Raises
    ------
    ValueError
        If the mask net's configuration cannot be written (see :func:`yaml_arguments`); nothing is written.

    Example
    -------
    >>> from spmamba_sb.nnet.bmamba import BMamba
    >>> masknet = MaskNet(n_fft=32, emb_dim=4, emb_kernel_size=3, num_blocks=1, num_heads=2, attention_qk_dim=17,
    ...                   sequence_layer=functools.partial(BMamba, d_state=4, expand=2))
    >>> folder = str(getfixture("tmp_path"))
    >>> write_model_folder(folder, 8000, Encoder(32, 8), masknet, save_weights=True)
    >>> sorted(os.listdir(folder))
    ['decoder.ckpt', 'encoder.ckpt', 'hyperparams.yaml', 'masknet.ckpt']
    """
    stft = dict(n_fft=encoder.n_fft, hop_length=encoder.hop_length, win_length=encoder.win_length,
                window=encoder.window_name)
    contents: Dict[str, Union[str, bytes]] = {"hyperparams.yaml": model_yaml(sample_rate, stft, masknet.config)}
    if save_weights:  # the encoder and decoder have no parameters
        states = {"encoder.ckpt": encoder.state_dict(), "masknet.ckpt": masknet.state_dict(), "decoder.ckpt": {}}
        for name, state in states.items():
            buffer = io.BytesIO()
            torch.save(state, buffer)
            contents[name] = buffer.getvalue()
    _write_files(out_folder, contents)


def _write_files(out_folder: str, contents: Mapping[str, Union[str, bytes]]) -> None:
    """Write ``contents`` (file name -> text or bytes) into ``out_folder`` (created if needed), all or none."""
    os.makedirs(out_folder, exist_ok=True)
    with atomic_outputs([os.path.join(out_folder, name) for name in contents]) as partials:
        for partial, content in zip(partials, contents.values()):
            write_file(partial, content)


def _model_folder_files(out_folder: str) -> List[str]:
    """The files a model folder export writes in ``out_folder``."""
    return [os.path.join(out_folder, name) for name in ("hyperparams.yaml",) + MODEL_FILES]


def read_experiment(experiment_folder: str) -> Dict[str, Any]:
    """The settings a model folder needs, read from a training experiment's ``hyperparams.yaml``.

    The file is read as data: references are resolved, but no object is built and nothing
    is run (not the experiment's seeding either). A ``!name:`` argument of the mask net (its
    ``sequence_layer``) becomes the class it names, or a ``functools.partial`` of it: imported,
    not called. The older string form of the sequence layer is converted by
    :func:`~spmamba_sb.trio.upgrade_masknet_arguments`.

    Arguments
    ---------
    experiment_folder : str
        The ``output_folder`` of a ``train.py`` run.

    Returns
    -------
    dict
        ``sample_rate``, ``stft`` and ``masknet`` (constructor arguments) and ``save_folder``.

    Raises
    ------
    FileNotFoundError
        If the folder has no ``hyperparams.yaml``.
    ValueError
        If it does not define the trio (``Encoder`` and ``MaskNet`` of :mod:`spmamba_sb.trio`),
        or a ``!name:`` in the mask net's arguments names nothing importable.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> _ = (folder / "hyperparams.yaml").write_text(
    ...     "sample_rate: 8000\\nsave_folder: !ref <output_folder>/save\\n"
    ...     "Encoder: !new:spmamba_sb.trio.Encoder\\n    n_fft: 32\\n    hop_length: 8\\n"
    ...     "MaskNet: !new:spmamba_sb.trio.MaskNet\\n    n_fft: 32\\n"
    ...     "    sequence_layer: !name:spmamba_sb.nnet.sequence.BLSTM\\n        hidden_dim: 8\\n")
    >>> read_experiment(str(folder))["masknet"]
    {'n_fft': 32, 'sequence_layer': functools.partial(<class 'spmamba_sb.nnet.sequence.BLSTM'>, hidden_dim=8)}
    """
    hparams_path = os.path.join(experiment_folder, "hyperparams.yaml")
    if not os.path.isfile(hparams_path):
        raise FileNotFoundError(f"{experiment_folder!r} is not a training experiment (no hyperparams.yaml)")
    with open(hparams_path, encoding="utf-8") as handle:
        tree = ruamel.yaml.YAML().load(resolve_references(handle, {"output_folder": experiment_folder}))
    arguments = {}
    for key, cls in (("Encoder", Encoder), ("MaskNet", MaskNet)):
        node, expected = tree.get(key), f"!new:{cls.__module__}.{cls.__name__}"
        if getattr(getattr(node, "tag", None), "value", None) != expected:
            raise ValueError(f"{hparams_path}: {key} must be {expected} to export a model folder")
        arguments[key] = _plain(dict(node))
    stft = {name: value for name, value in arguments["Encoder"].items() if name in STFT_SETTINGS}
    return {"sample_rate": int(tree["sample_rate"]), "stft": stft,
            "masknet": upgrade_masknet_arguments(arguments["MaskNet"]), "save_folder": str(tree["save_folder"])}


def _plain(value: Any) -> Any:
    """ruamel's round-trip types as plain Python ones (bool, int, float, str, list, dict), and a
    ``!name:`` node as the callable it names (a ``functools.partial`` where it has arguments)."""
    tag = getattr(getattr(value, "tag", None), "value", None)
    if tag and tag.startswith(NAME_TAG):
        target = pydoc.locate(tag[len(NAME_TAG):])
        if target is None:
            raise ValueError(f"{tag}: no such class or function")
        if isinstance(value, list):
            raise ValueError(f"{tag}: give its arguments by name (positional ones are not exported)")
        keywords = _plain(dict(value)) if isinstance(value, dict) else {}
        return functools.partial(target, **keywords) if keywords else target
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


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
        A ``CKPT+...`` folder to export; default: the one with the best validation SI-SNR.
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
        If its hyperparameters do not define the trio (see :func:`read_experiment`), or a file
        to write is one of the files read.
    """
    experiment = read_experiment(experiment_folder)
    if checkpoint is None:
        found = Checkpointer(experiment["save_folder"]).find_checkpoint(min_key="si-snr")
        if found is None:
            raise FileNotFoundError(f"no checkpoint under {experiment['save_folder']!r}")
        checkpoint = str(found.path)
    weights = [os.path.join(checkpoint, name) for name in MODEL_FILES]
    inputs = [experiment_folder, os.path.join(experiment_folder, "hyperparams.yaml"), checkpoint, *weights]
    check_outputs(_model_folder_files(out_folder), inputs, overwrite)
    contents: Dict[str, Union[str, bytes]] = {
        "hyperparams.yaml": model_yaml(experiment["sample_rate"], experiment["stft"], experiment["masknet"])}
    for name, path in zip(MODEL_FILES, weights):
        with open(path, "rb") as handle:
            contents[name] = handle.read()
    _write_files(out_folder, contents)
    logger.info("exported %s to %s", checkpoint, out_folder)
    return checkpoint


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
    """
    check_outputs(_model_folder_files(out_folder), [checkpoint] + ([config] if config else []), overwrite)
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
