"""Convert state dicts of the reference SPMamba / TF-GridNet implementations to this package.

The reference implementations (the SPMamba repository's ``TFGridNetMamba`` and ESPnet's
``TFGridNet``) store one module per attention head (``attn_conv_Q_{h}``) and name their
sequence layers ``{intra,inter}_mamba`` / ``{intra,inter}_rnn``. Here the heads of one
block share a convolution, so their weights are concatenated head by head.
"""

import os
import re
from collections import defaultdict
from typing import Any, Dict, List, Mapping, Tuple, Union

import torch

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

    Example
    -------
    >>> read_reference_checkpoint({"state_dict": {"audio_model.deconv.bias": torch.zeros(4)}})
    {'deconv.bias': tensor([0., 0., 0., 0.])}
    """
    if isinstance(obj, (str, os.PathLike)):
        if not os.path.isfile(obj):
            raise FileNotFoundError(f"no checkpoint file at {os.fspath(obj)!r}")
        obj = torch.load(obj, map_location="cpu", weights_only=True)
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
