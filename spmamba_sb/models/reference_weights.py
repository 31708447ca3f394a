"""Convert state dicts of the reference SPMamba / TF-GridNet implementations to this package.

The reference implementations (the SPMamba repository's ``TFGridNetMamba`` and ESPnet's
``TFGridNet``) store one module per attention head (``attn_conv_Q_{h}``) and name their
sequence layers ``{intra,inter}_mamba`` / ``{intra,inter}_rnn``. Here the heads of one
block share a convolution, so their weights are concatenated head by head.
"""

import os
import re
from collections import defaultdict
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch

from spmamba_sb.models.reference_keywords import reference_keyword, to_our_keywords
from spmamba_sb.nnet.sequence import sequence_layer_factory
from spmamba_sb.tensor_files import load_tensor_file

LIGHTNING_PREFIX = "audio_model."
_SLOTS = {"0": "conv", "1": "act", "2": "norm"}
_HEAD_ROLES = {"Q": "query", "K": "key", "V": "value"}
# (reference pattern, our name); patterns are matched against the whole key.
_RENAMES: List[Tuple[re.Pattern, str]] = [
    (re.compile(p), r) for p, r in [
        (r"conv\.([01])\.(weight|bias)", r"embed.\1.\2"),
        (r"deconv\.(weight|bias)", r"deconv.\1"),
        (r"blocks\.(\d+)\.(intra|inter)_norm\.(gamma|beta)", r"blocks.\1.\2.norm.\3"),
        (r"blocks\.(\d+)\.(intra|inter)_mamba\.(forward|backward)_blocks\.0\.norm\.weight",
         r"blocks.\1.\2.sequence.\3_norm.weight"),
        (r"blocks\.(\d+)\.(intra|inter)_mamba\.(forward|backward)_blocks\.0\.mixer\.(.+)",
         r"blocks.\1.\2.sequence.\3_mixer.\4"),
        (r"blocks\.(\d+)\.(intra|inter)_rnn\.(.+)", r"blocks.\1.\2.sequence.lstm.\3"),
        (r"blocks\.(\d+)\.(intra|inter)_linear\.(weight|bias)", r"blocks.\1.\2.project.\3"),
    ]
]
_CONCAT_PROJ = re.compile(r"blocks\.(\d+)\.attn_concat_proj\.([012])\.(.+)")
_HEAD = re.compile(r"blocks\.(\d+)\.attn_conv_([QKV])_(\d+)\.([012])\.(.+)")


def read_reference_checkpoint(obj: Union[str, os.PathLike, Mapping[str, Any]]) -> Dict[str, torch.Tensor]:
    """Extract the reference model's state dict from a checkpoint in any of its forms.

    Arguments
    ---------
    obj : str, os.PathLike or Mapping
        A raw state dict, a released checkpoint ``{model_name, state_dict, model_args, infos}``,
        a Lightning checkpoint (keys prefixed ``audio_model.``), or a path to a file holding
        one of these.

    Returns
    -------
    dict
        Reference key -> tensor, without the Lightning prefix.

    Raises
    ------
    FileNotFoundError
        If the path is not a file.
    spmamba_sb.tensor_files.TensorFileError
        If the file is empty, not a PyTorch checkpoint, or a pickle of anything but tensors and
        plain values (refused unread, see :func:`~spmamba_sb.tensor_files.load_tensor_file`).
    TypeError
        If it holds no mapping.

    Example
    -------
    >>> read_reference_checkpoint({"state_dict": {"audio_model.deconv.bias": torch.zeros(4)}})
    {'deconv.bias': tensor([0., 0., 0., 0.])}
    """
    if isinstance(obj, (str, os.PathLike)):
        if not os.path.isfile(obj):
            raise FileNotFoundError(f"no checkpoint file at {os.fspath(obj)!r}")
        obj = load_tensor_file(os.fspath(obj))
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a state dict, a checkpoint dict or a path, got {type(obj).__name__}")
    state = obj.get("state_dict", obj)
    if any(key.startswith(LIGHTNING_PREFIX) for key in state):
        state = {k[len(LIGHTNING_PREFIX):]: v for k, v in state.items() if k.startswith(LIGHTNING_PREFIX)}
    return dict(state)


def convert_reference_state_dict(state: Mapping[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Rename reference keys to :class:`~spmamba_sb.models.gridnet.GridNetMaskNet` keys.

    Arguments
    ---------
    state : Mapping
        Reference key -> tensor (see :func:`read_reference_checkpoint`).

    Returns
    -------
    converted : dict
        Mask-net key -> tensor; per-head tensors are concatenated in head order.
    unexpected : list of str
        Reference keys that match no known name.

    Example
    -------
    >>> converted, unexpected = convert_reference_state_dict(
    ...     {"blocks.0.attn_conv_Q_1.1.weight": torch.ones(1),
    ...      "blocks.0.attn_conv_Q_0.1.weight": torch.zeros(1), "extra": torch.ones(1)})
    >>> converted["blocks.0.attention.query.act.weight"], unexpected
    (tensor([0., 1.]), ['extra'])
    """
    converted: Dict[str, torch.Tensor] = {}
    heads: Dict[str, Dict[int, torch.Tensor]] = defaultdict(dict)
    unexpected: List[str] = []
    for key, value in state.items():
        for pattern, replacement in _RENAMES:
            if pattern.fullmatch(key):
                converted[pattern.sub(replacement, key)] = value
                break
        else:
            if match := _CONCAT_PROJ.fullmatch(key):
                block, slot, param = match.groups()
                converted[f"blocks.{block}.attention.output.{_SLOTS[slot]}.{param}"] = value
            elif match := _HEAD.fullmatch(key):
                block, role, head, slot, param = match.groups()
                name = f"blocks.{block}.attention.{_HEAD_ROLES[role]}.{_SLOTS[slot]}.{param}"
                heads[name][int(head)] = value
            else:
                unexpected.append(key)
    for name, per_head in heads.items():
        if sorted(per_head) != list(range(len(per_head))):
            raise KeyError(f"heads of {name!r} are not numbered 0..H-1: found {sorted(per_head)}")
        dim = 1 if name.endswith(("gamma", "beta")) else 0  # norms are [1, C, 1, F]
        converted[name] = torch.cat([per_head[h] for h in range(len(per_head))], dim=dim)
    return converted, unexpected


#: The published settings that a checkpoint's shapes do not hold.
PUBLISHED_SAMPLE_RATES = {256: 8000, 512: 16000}  # by n_fft
PUBLISHED_QK_DIM = 512


def settings_from_shapes(state: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """The mask net's arguments that a reference state dict's shapes determine.

    Arguments
    ---------
    state : Mapping
        The reference's weights, as :func:`convert_reference_state_dict` takes them.

    Returns
    -------
    dict
        ``num_spks``, ``n_fft``, ``num_mics``, ``emb_dim``, ``emb_kernel_size``, ``num_blocks``,
        ``num_heads``, the sequence layer's sizes under the models' keywords (``d_state``,
        ``d_conv`` and ``expand`` for Mamba, ``lstm_hidden_dim`` for an LSTM), and ``qk_channels``
        (E of the attention).

    Raises
    ------
    KeyError
        If a key that every reference checkpoint has is missing.
    """
    def need(key):
        if key not in state:
            raise KeyError(f"not a reference SPMamba / TF-GridNet state dict: no {key!r}")
        return state[key].shape

    emb_dim, in_channels = need("conv.0.weight")[:2]
    blocks = {int(key.split(".")[1]) for key in state if key.startswith("blocks.")}
    heads = {int(m.group(3)) for key in state if (m := _HEAD.fullmatch(key)) and m.group(1) == "0"}
    qk_channels, n_freqs = need("blocks.0.attn_conv_Q_0.2.gamma")[1::2]
    settings = dict(num_spks=need("deconv.weight")[1] // 2, n_fft=2 * (n_freqs - 1), num_mics=in_channels // 2,
                    emb_dim=emb_dim, num_blocks=len(blocks), num_heads=len(heads), qk_channels=qk_channels)
    mixer = "blocks.0.intra_mamba.forward_blocks.0.mixer."
    if mixer + "in_proj.weight" in state:
        two_inner, d_model = need(mixer + "in_proj.weight")
        settings.update(d_state=need(mixer + "A_log")[1], d_conv=need(mixer + "conv1d.weight")[-1],
                        expand=two_inner // 2 // d_model)
    else:
        four_hidden, d_model = need("blocks.0.intra_rnn.weight_ih_l0")
        settings.update(lstm_hidden_dim=four_hidden // 4)
    settings["emb_kernel_size"] = d_model // emb_dim
    return {key: int(value) for key, value in settings.items()}


def reference_settings(state: Mapping[str, torch.Tensor], config: Optional[Mapping[str, Any]] = None,
                       sample_rate: Optional[int] = None) -> Tuple[Dict[str, Any], str]:
    """Everything a model folder needs, for the reference weights ``state``.

    The shapes give the network's sizes. The hop, ``emb_hs``, the attention's ``approx_qk_dim``
    and the sample rate come from the reference's ``audionet_config`` (its keywords read by
    :func:`~spmamba_sb.models.reference_keywords.to_our_keywords`; and the data config's
    ``sample_rate``) when given, else from the published presets: hop = n_fft / 4, ``emb_hs`` 1,
    ``approx_qk_dim`` 512 (or E x F where that does not give E) and 8 kHz for n_fft 256, 16 kHz
    for 512.

    Arguments
    ---------
    state : Mapping
        Reference key -> tensor (see :func:`read_reference_checkpoint`).
    config : Mapping, optional
        The reference's ``audionet_config`` (its constructor's keywords).
    sample_rate : int, optional
        The data config's ``sample_rate``.

    Returns
    -------
    settings : dict
        ``sample_rate``, ``stft`` (``n_fft``, ``hop_length``, ``window``) and ``masknet``
        (:class:`~spmamba_sb.models.gridnet.GridNetMaskNet` arguments; ``sequence_layer`` from
        :func:`~spmamba_sb.nnet.sequence.sequence_layer_factory`, of BMamba or BLSTM).
    summary : str
        One line saying where each setting came from.

    Raises
    ------
    ValueError
        If the config contradicts the weights, or the sample rate is unknown.

    Example
    -------
    >>> state = read_reference_checkpoint("wsj0-2mix/best_model.pth")  # doctest: +SKIP
    >>> settings, summary = reference_settings(state)  # doctest: +SKIP
    >>> settings["sample_rate"], settings["stft"]["hop_length"]  # doctest: +SKIP
    (8000, 64)
    """
    shapes = settings_from_shapes(state)
    n_fft, n_freqs, qk_channels = shapes["n_fft"], shapes["n_fft"] // 2 + 1, shapes.pop("qk_channels")
    given = to_our_keywords(config or {})
    conflicts = [f"{reference_keyword(key)}={given[key]!r} (the weights have {shapes[key]!r})" for key in shapes
                 if key in given and given[key] != shapes[key]]
    qk_dim = given.get("attention_qk_dim", PUBLISHED_QK_DIM if -(-PUBLISHED_QK_DIM // n_freqs) == qk_channels
                       else qk_channels * n_freqs)
    if -(-qk_dim // n_freqs) != qk_channels:
        conflicts.append(f"attn_approx_qk_dim={qk_dim} (the weights have {qk_channels} query channels for "
                         f"{n_freqs} bins)")
    if conflicts:
        raise ValueError("the reference config contradicts the weights: " + ", ".join(conflicts))
    rate = sample_rate or PUBLISHED_SAMPLE_RATES.get(n_fft)
    if rate is None:
        raise ValueError(f"no published sample rate for n_fft {n_fft}: give the reference's config with its "
                         "datamodule.data_config.sample_rate")
    eps = {"eps": float(given["eps"])} if "eps" in given else {}
    if "lstm_hidden_dim" in shapes:
        kind, layer = "lstm", {"hidden_dim": shapes.pop("lstm_hidden_dim")}
    else:  # BMamba's RMSNorm epsilon is the network's, as in SPMamba
        kind, layer = "mamba", {**{name: shapes.pop(name) for name in ("d_state", "d_conv", "expand")}, **eps}
    sequence_layer = sequence_layer_factory(kind, **layer)
    masknet = dict(shapes, emb_hop_size=int(given.get("emb_hop_size", 1)), attention_qk_dim=int(qk_dim), **eps,
                   sequence_layer=sequence_layer)
    stft = dict(n_fft=n_fft, hop_length=int(given.get("hop_length", n_fft // 4)),
                window=str(given.get("window", "hann")))
    from_config = [reference_keyword(key) for key in ("hop_length", "window", "emb_hop_size", "attention_qk_dim", "eps")
                   if key in given] + (["sample_rate"] if sample_rate else [])
    summary = (f"{kind} network of {masknet['num_blocks']} blocks, n_fft {n_fft}, "
               f"{masknet['num_spks']} sources from the weights' shapes; hop {stft['hop_length']}, emb_hs "
               f"{masknet['emb_hop_size']}, approx_qk_dim {qk_dim}, {rate} Hz from "
               + (f"the config ({', '.join(from_config)}; the rest published presets)" if config or sample_rate
                  else "the published presets"))
    return {"sample_rate": int(rate), "stft": stft, "masknet": masknet}, summary


def load_reference_weights(masknet: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load reference weights into a :class:`~spmamba_sb.models.gridnet.GridNetMaskNet` (strict).

    Arguments
    ---------
    masknet : torch.nn.Module
        The mask net to fill.
    state : Mapping
        Reference key -> tensor (see :func:`read_reference_checkpoint`).

    Raises
    ------
    KeyError
        Listing the missing and unexpected keys when the names do not match.
    ValueError
        When a tensor's shape does not match.
    """
    converted, unexpected = convert_reference_state_dict(state)
    ours = masknet.state_dict()
    missing = sorted(set(ours) - set(converted))
    unexpected += sorted(set(converted) - set(ours))
    if missing or unexpected:
        raise KeyError(
            "reference weights do not match this model: "
            f"missing {len(missing)} {missing[:20]}, unexpected {len(unexpected)} {unexpected[:20]}"
        )
    wrong = [f"{key} {tuple(value.shape)} (the model: {tuple(ours[key].shape)})"
             for key, value in converted.items() if value.shape != ours[key].shape]
    if wrong:
        raise ValueError(f"reference weights do not match this model's shapes: {', '.join(wrong[:10])}")
    masknet.load_state_dict(converted, strict=True)
