"""Model folders: writing one, reading one after checking it, and upgrading older ones.

A model folder holds ``hyperparams.yaml`` (the trio of :mod:`spmamba_sb.trio`, ``sample_rate``,
``num_spks`` and a ``pretrainer``) and the trio's weights, :data:`MODEL_FILES`. It loads with
:class:`~spmamba_sb.inference.SPMambaSeparation` and, unchanged, with SpeechBrain's
``SepformerSeparation``.

* Writing: :func:`write_model_folder` from a trio; :func:`model_yaml` and :func:`write_files`
  for the export commands (:mod:`spmamba_sb.export`), with :func:`read_experiment`, which reads a
  training experiment's ``hyperparams.yaml`` as data.
* Reading: :func:`check_hyperparams` fetches a folder's ``hyperparams.yaml`` and checks it
  against the allow-list of :mod:`spmamba_sb.model_trust` before anything is built; the package
  checks model folders here and nowhere else.
* Starting training from one: :func:`load_initial_masknet` loads a checked folder's mask-net
  weights into a new mask net (``train.py``'s ``init_from``), the parameters sized by the
  frequency bins carried over bin by bin, so an 8 kHz model starts a 16 kHz one.
* Upgrading: older files name the sequence layer by a string; :func:`upgrade_masknet_arguments`
  turns those arguments into today's. The trio's ``MaskNet`` calls it, so older folders load
  in SpeechBrain's loaders too.

The trio imports this module, so the trio's classes appear here by their dotted names only,
the names a model folder's ``hyperparams.yaml`` uses.
"""

import functools
import inspect
import io
import os
import pydoc
from typing import Any, Dict, List, Mapping, Union

import ruamel.yaml
import torch
import torch.nn as nn
import yaml
import spmamba_sb.torch_pair  # noqa: F401  before SpeechBrain: a torchaudio that does not load is named
from hyperpyyaml import resolve_references
from speechbrain.utils.fetching import fetch

from spmamba_sb.model_trust import check_model_yaml
from spmamba_sb.models.gridnet import GridNetMaskNet
from spmamba_sb.nnet.sequence import SEQUENCE_LAYERS, sequence_layer_factory
from spmamba_sb.nnet.stft import STFT_SETTINGS, STFTEncoder
from spmamba_sb.outputs import atomic_outputs, write_file
from spmamba_sb.tensor_files import load_tensor_file

HYPERPARAMS_FILE = "hyperparams.yaml"
#: The trio's weights.
MODEL_FILES = ("encoder.ckpt", "masknet.ckpt", "decoder.ckpt")
#: Every file of a model folder.
FOLDER_FILES = (HYPERPARAMS_FILE, *MODEL_FILES)
#: The module of the classes a model folder builds (``Encoder``, ``MaskNet``, ``Decoder``).
TRIO_MODULE = "spmamba_sb.trio"
NAME_TAG = "!name:"
# Older files' settings of the sequence layer, by the string that named it: {theirs: today's}
# (see upgrade_masknet_arguments). BMamba took the mask net's own eps as well.
LEGACY_LAYER_KEYWORDS = {
    "lstm": {"lstm_hidden_dim": "hidden_dim"},
    "mamba": {name: name for name in ("d_state", "d_conv", "expand", "scan_backend")},
}

INFERENCE_YAML = """\
# SPMamba separation model.
# Loads with spmamba_sb.inference.SPMambaSeparation.from_hparams(source=<this folder>)
# and with speechbrain.inference.separation.SepformerSeparation.from_hparams(...).
sample_rate: {sample_rate}
num_spks: {num_spks}

Encoder: !new:{trio}.Encoder
{stft}
MaskNet: !new:{trio}.MaskNet
{masknet}
Decoder: !new:{trio}.Decoder
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
    return INFERENCE_YAML.format(sample_rate=sample_rate, num_spks=num_spks, trio=TRIO_MODULE,
                                 stft=yaml_arguments(stft), masknet=yaml_arguments(masknet))


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
    >>> from spmamba_sb.nnet.sequence import sequence_layer_factory
    >>> print(yaml_arguments({"num_spks": 2, "sequence_layer": sequence_layer_factory("lstm", hidden_dim=64)}), end="")
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


def write_model_folder(out_folder: str, sample_rate: int, encoder: STFTEncoder, masknet: nn.Module,
                       save_weights: bool = False) -> None:
    """Write a model folder's ``hyperparams.yaml`` for a trio (and its weights if asked).

    The files are written all or none (see :func:`write_files`); existing ones are replaced.
    The export commands of :mod:`spmamba_sb.export` check first.

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
    >>> from spmamba_sb.nnet.sequence import sequence_layer_factory
    >>> from spmamba_sb.trio import Encoder, MaskNet
    >>> masknet = MaskNet(n_fft=32, emb_dim=4, emb_kernel_size=3, num_blocks=1, num_heads=2, attention_qk_dim=17,
    ...                   sequence_layer=sequence_layer_factory("mamba", d_state=4, expand=2))
    >>> folder = str(getfixture("tmp_path"))
    >>> write_model_folder(folder, 8000, Encoder(32, 8), masknet, save_weights=True)
    >>> sorted(os.listdir(folder))
    ['decoder.ckpt', 'encoder.ckpt', 'hyperparams.yaml', 'masknet.ckpt']
    """
    stft = dict(n_fft=encoder.n_fft, hop_length=encoder.hop_length, win_length=encoder.win_length,
                window=encoder.window_name)
    contents: Dict[str, Union[str, bytes]] = {HYPERPARAMS_FILE: model_yaml(sample_rate, stft, masknet.config)}
    if save_weights:  # the encoder and decoder have no parameters
        states = {"encoder.ckpt": encoder.state_dict(), "masknet.ckpt": masknet.state_dict(), "decoder.ckpt": {}}
        for name, state in states.items():
            buffer = io.BytesIO()
            torch.save(state, buffer)
            contents[name] = buffer.getvalue()
    write_files(out_folder, contents)


def write_files(out_folder: str, contents: Mapping[str, Union[str, bytes]]) -> None:
    """Write files into ``out_folder`` (created if needed), all or none
    (:func:`~spmamba_sb.outputs.atomic_outputs`).

    Arguments
    ---------
    out_folder : str
        The folder.
    contents : Mapping
        File name -> text or bytes.

    Example
    -------
    >>> folder = getfixture("tmp_path") / "model"
    >>> write_files(str(folder), {"hyperparams.yaml": "sample_rate: 8000\\n"})
    >>> (folder / "hyperparams.yaml").read_text()
    'sample_rate: 8000\\n'
    """
    os.makedirs(out_folder, exist_ok=True)
    with atomic_outputs([os.path.join(out_folder, name) for name in contents]) as partials:
        for partial, content in zip(partials, contents.values()):
            write_file(partial, content)


def model_folder_files(folder: str) -> List[str]:
    """The paths of a model folder's files (:data:`FOLDER_FILES`) in ``folder``.

    Example
    -------
    >>> model_folder_files("model")
    ['model/hyperparams.yaml', 'model/encoder.ckpt', 'model/masknet.ckpt', 'model/decoder.ckpt']
    """
    return [os.path.join(folder, name) for name in FOLDER_FILES]


def read_experiment(experiment_folder: str) -> Dict[str, Any]:
    """The settings a model folder needs, read from a training experiment's ``hyperparams.yaml``.

    The file is read as data: references are resolved, but no object is built and nothing
    is run (not the experiment's seeding either). A ``!name:`` argument of the mask net (its
    ``sequence_layer``) becomes the class it names, or a ``functools.partial`` of it: imported,
    not called. The older string form of the sequence layer is converted by
    :func:`upgrade_masknet_arguments`.

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
    hparams_path = os.path.join(experiment_folder, HYPERPARAMS_FILE)
    if not os.path.isfile(hparams_path):
        raise FileNotFoundError(f"{experiment_folder!r} is not a training experiment (no hyperparams.yaml)")
    with open(hparams_path, encoding="utf-8") as handle:
        text = handle.read()
    tree = ruamel.yaml.YAML().load(resolve_references(text, {"output_folder": experiment_folder}))
    arguments = {}
    for key in ("Encoder", "MaskNet"):
        node, expected = tree.get(key), f"!new:{TRIO_MODULE}.{key}"
        if getattr(getattr(node, "tag", None), "value", None) != expected:
            raise ValueError(f"{hparams_path}: {key} must be {expected} to export a model folder")
        arguments[key] = _plain(dict(node))
    stft = {name: value for name, value in arguments["Encoder"].items() if name in STFT_SETTINGS}
    return {"sample_rate": int(tree["sample_rate"]), "stft": stft,
            "masknet": upgrade_masknet_arguments(arguments["MaskNet"]),
            "save_folder": _moved_with(str(tree["save_folder"]), ruamel.yaml.YAML().load(text).get("output_folder"),
                                       experiment_folder)}


def _moved_with(save_folder: str, saved_output_folder: Any, experiment_folder: str) -> str:
    """``save_folder`` for an experiment found in ``experiment_folder``: SpeechBrain saves
    ``hyperparams.yaml`` with its references resolved, so a copied or moved experiment still names
    the checkpoints where it was trained; a folder under the output folder it was saved with is
    taken under ``experiment_folder`` instead."""
    if not isinstance(saved_output_folder, str) or "<" in saved_output_folder:
        return save_folder  # an unresolved reference: the override already placed it
    saved, target = os.path.abspath(saved_output_folder), os.path.abspath(save_folder)
    if os.path.commonpath([saved, target]) != saved:
        return save_folder  # checkpoints kept outside the experiment stay where they are
    return os.path.normpath(os.path.join(experiment_folder, os.path.relpath(target, saved)))


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


def check_hyperparams(source: str, hparams_file: str = HYPERPARAMS_FILE, **fetch_options: Any) -> str:
    """Fetch a model folder's ``hyperparams.yaml`` and check that it builds only allow-listed
    classes (:func:`~spmamba_sb.model_trust.check_model_yaml`), building nothing.

    Arguments
    ---------
    source : str
        The model folder (or any source SpeechBrain's ``fetch`` takes).
    hparams_file : str
        The hyperparameter file in ``source``.
    **fetch_options
        ``savedir``, ``local_strategy``, ``fetch_config`` of SpeechBrain's ``fetch``.

    Returns
    -------
    str
        The local path of the checked file.

    Raises
    ------
    spmamba_sb.model_trust.UntrustedModelError
        If the file names code outside the allow-list, naming the line.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> _ = (folder / "hyperparams.yaml").write_text("pwn: !apply:os.system [touch marker]\\n")
    >>> check_hyperparams(str(folder))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
      ...
    spmamba_sb.model_trust.UntrustedModelError: .../hyperparams.yaml line 1: !apply:os.system is not on ...
    """
    path = str(fetch(filename=hparams_file, source=source, save_filename=None, **fetch_options))
    check_model_yaml(path)
    return path


#: Said when the attention's query or key channels differ: each head has ceil(attention_qk_dim / bins).
ATTENTION_WIDTH_HINT = (" (the attention's width: each head has attention_qk_dim / frequency bins channels, rounded up;"
                        " give attention_qk_dim = the folder's channels a head x this network's bins)")


class IncompatibleModelError(ValueError):
    """A model folder whose mask net cannot start the one being trained (another size of
    network); the message names the folder and the first parameter that differs."""


def load_initial_masknet(masknet: nn.Module, folder: str, sample_rate: int) -> int:
    """Load a model folder's mask-net weights into ``masknet``, to start training from them.

    The folder's ``hyperparams.yaml`` is checked first against the allow-list
    (:func:`~spmamba_sb.model_trust.check_model_yaml`, as :func:`check_hyperparams` does, here on a
    local folder only) and its ``masknet.ckpt`` read as tensors only. Every parameter must have the same shape in both, but
    those sized by the frequency bins (the attention's norms, ``[..., F]``): a bin of
    ``masknet`` takes the folder's bin nearest its frequency in Hz, the folder's top bin above
    its band. So a model of ``n_fft`` 256 at 8 kHz starts one of ``n_fft`` 512 at 16 kHz (the
    same 31.25 Hz bins; the 4-8 kHz bins start from the 4 kHz one).

    Arguments
    ---------
    masknet : torch.nn.Module
        A :class:`~spmamba_sb.trio.MaskNet` (or ``GridNetMaskNet``); changed in place.
    folder : str
        A local model folder (:data:`FOLDER_FILES`).
    sample_rate : int
        The sample rate ``masknet`` is trained at.

    Returns
    -------
    int
        How many parameters were carried over in frequency rather than copied.

    Raises
    ------
    FileNotFoundError
        If ``folder`` lacks ``hyperparams.yaml`` or ``masknet.ckpt``.
    spmamba_sb.model_trust.UntrustedModelError
        If its ``hyperparams.yaml`` names code outside the allow-list.
    IncompatibleModelError
        If a parameter is missing on either side or differs in another way.

    Example
    -------
    >>> from spmamba_sb.nnet.sequence import sequence_layer_factory
    >>> from spmamba_sb.trio import Encoder, MaskNet
    >>> layer = sequence_layer_factory("mamba", d_state=4, expand=2, scan_backend="torch")
    >>> sizes = dict(num_spks=2, emb_dim=4, emb_kernel_size=3, num_blocks=1, num_heads=2,
    ...              attention_qk_dim=17, sequence_layer=layer)
    >>> folder = str(getfixture("tmp_path"))
    >>> write_model_folder(folder, 8000, Encoder(n_fft=32, hop_length=8), MaskNet(n_fft=32, **sizes),
    ...                    save_weights=True)
    >>> load_initial_masknet(MaskNet(n_fft=64, **sizes), folder, sample_rate=16000)
    8
    """
    path = os.path.join(folder, HYPERPARAMS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder!r} is not a model folder (no {HYPERPARAMS_FILE})")
    check_model_yaml(path)
    with open(path, encoding="utf-8") as handle:
        tree = ruamel.yaml.YAML().load(resolve_references(handle, {}))
    masknet_arguments = tree.get("MaskNet") or {}
    n_fft = masknet_arguments.get("n_fft", inspect.signature(GridNetMaskNet).parameters["n_fft"].default)
    if "sample_rate" not in tree:
        raise IncompatibleModelError(f"{path}: no sample_rate")
    source_hz = int(tree["sample_rate"]) / int(n_fft)  # Hz between two bins
    target_hz = sample_rate / masknet.n_fft
    weights = load_tensor_file(os.path.join(folder, "masknet.ckpt"))
    state = masknet.state_dict()
    if set(weights) != set(state):
        name = sorted(set(weights) ^ set(state))[0]
        where = "the folder's" if name in weights else "this"
        raise IncompatibleModelError(f"{folder}: {name} is only in {where} mask net: not the same network")
    resampled = 0
    for name, value in weights.items():
        if value.shape != state[name].shape:
            value = _in_frequency(value, state[name].shape, source_hz, target_hz)
            if value is None:
                hint = ATTENTION_WIDTH_HINT if ".attention.query." in name or ".attention.key." in name else ""
                raise IncompatibleModelError(f"{folder}: {name} is {tuple(weights[name].shape)} there and "
                                             f"{tuple(state[name].shape)} here: not the same network{hint}")
            resampled += 1
        state[name] = value
    masknet.load_state_dict(state)
    return resampled


def _in_frequency(value: torch.Tensor, shape: torch.Size, source_hz: float, target_hz: float):
    """``value`` carried to ``shape`` along its last axis, taken as frequency bins ``source_hz``
    apart, to bins ``target_hz`` apart (nearest bin, the top one held); None where the shapes
    differ elsewhere."""
    if value.shape[:-1] != shape[:-1]:
        return None
    bins = torch.arange(shape[-1], dtype=torch.float64) * target_hz / source_hz
    return value[..., bins.round().long().clamp(max=value.shape[-1] - 1)]


def upgrade_masknet_arguments(arguments: Mapping[str, Any]) -> Dict[str, Any]:
    """Mask-net arguments in the form that older ``hyperparams.yaml`` files use, in today's form.

    Older files name the sequence layer by a string and put its settings beside it:
    ``sequence_layer: mamba`` (also meant when it is absent) with ``d_state``, ``d_conv``,
    ``expand``, ``scan_backend``, or ``sequence_layer: lstm`` with ``lstm_hidden_dim``; the
    settings of the other layer were accepted and unused. This function is the only place
    where those strings are read: they become the factory that
    :class:`~spmamba_sb.models.gridnet.GridNetMaskNet` takes, from
    :func:`~spmamba_sb.nnet.sequence.sequence_layer_factory` (BMamba with the mask net's
    ``eps``, as then). Arguments in today's form come back unchanged.

    Arguments
    ---------
    arguments : Mapping
        Keyword arguments of :class:`~spmamba_sb.trio.MaskNet`.

    Returns
    -------
    dict
        The same arguments with ``sequence_layer`` a factory.

    Raises
    ------
    ValueError
        On a string other than ``"mamba"`` and ``"lstm"``.
    TypeError
        On a layer setting beside a ``sequence_layer`` factory.

    Example
    -------
    >>> upgrade_masknet_arguments({"num_spks": 2, "sequence_layer": "lstm", "lstm_hidden_dim": 64})
    {'num_spks': 2, 'sequence_layer': functools.partial(<class 'spmamba_sb.nnet.sequence.BLSTM'>, hidden_dim=64)}
    """
    legacy = [name for keywords in LEGACY_LAYER_KEYWORDS.values() for name in keywords if name in arguments]
    layer = arguments.get("sequence_layer")
    if layer is None and legacy:
        layer = "mamba"  # the older default
    if not isinstance(layer, str):  # today's form, or the default layer
        if legacy:
            raise TypeError(f"{legacy[0]} is a setting of the sequence layer: give it to sequence_layer={layer!r}")
        return dict(arguments)
    if layer not in SEQUENCE_LAYERS:
        raise ValueError(f"sequence_layer={layer!r} is not one of {tuple(SEQUENCE_LAYERS)} "
                         "(or a factory such as !name:spmamba_sb.nnet.bmamba.BMamba)")
    settings = {ours: arguments[theirs] for theirs, ours in LEGACY_LAYER_KEYWORDS[layer].items() if theirs in arguments}
    if layer == "mamba" and "eps" in arguments:
        settings["eps"] = arguments["eps"]
    upgraded = {key: value for key, value in arguments.items() if key not in legacy}
    upgraded["sequence_layer"] = sequence_layer_factory(layer, **settings)
    return upgraded
