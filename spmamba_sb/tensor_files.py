"""Reading a file of tensors that a user hands us (a checkpoint, a reference model's weights).

:func:`load_tensor_file` is ``torch.load`` with ``weights_only=True``: a file may hold tensors
and plain values (dict, list, tuple, str, int, float, bool, None), and a pickle that names any
other Python object is refused before anything runs. A file that is not a checkpoint at all
(empty, text, damaged) is one :class:`TensorFileError` line, never a traceback.

Example
-------
>>> import torch
>>> path = str(getfixture("tmp_path") / "weights.ckpt")
>>> torch.save({"step": 3, "weight": torch.zeros(2)}, path)
>>> load_tensor_file(path)
{'step': 3, 'weight': tensor([0., 0.])}
"""

import os
import pickle
import re
import warnings
from typing import Any

import torch

ZIP_MAGIC = b"PK\x03\x04"  # the first bytes of a torch.save file (a zip archive since PyTorch 1.6)
REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+)")  # how torch's weights-only unpickler names what it refused


class TensorFileError(ValueError):
    """A file ``torch.load`` refuses or cannot read; the message is ``<path>: <problem>``.

    Example
    -------
    >>> str(TensorFileError("random_state.ckpt: empty file"))
    'random_state.ckpt: empty file'
    """


def load_tensor_file(path: str) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, with one-line errors.

    Arguments
    ---------
    path : str
        A file written by ``torch.save``.

    Returns
    -------
    Any
        What the file holds: tensors (on the CPU) and plain values.

    Raises
    ------
    TensorFileError
        ``"<path>: empty file"``; ``"<path>: not a checkpoint of tensors and plain values
        (refused to unpickle <name>)"`` for a pickle that names another Python object (nothing
        of it runs); ``"<path>: not a PyTorch checkpoint (<why>)"`` for anything else.
    OSError
        If the file cannot be read (missing, a folder, no permission).

    Example
    -------
    >>> path = getfixture("tmp_path") / "notackpt.ckpt"
    >>> _ = path.write_text("not a checkpoint\\n")
    >>> load_tensor_file(str(path))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
      ...
    spmamba_sb.tensor_files.TensorFileError: .../notackpt.ckpt: not a PyTorch checkpoint (not a file written ...)
    """
    if os.path.getsize(path) == 0:
        raise TensorFileError(f"{path}: empty file")
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol is reported as the error below, if at all
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as error:  # the unpickler and the zip reader fail in many ways on foreign files
        raise TensorFileError(f"{path}: {_problem(path, error)}") from error


def _problem(path: str, error: Exception) -> str:
    """What is wrong with a file ``torch.load`` failed on with ``error``."""
    refused = REFUSED_GLOBAL.search(str(error)) if isinstance(error, pickle.UnpicklingError) else None
    if refused:
        return f"not a checkpoint of tensors and plain values (refused to unpickle {refused.group(1)})"
    with open(path, "rb") as handle:
        if handle.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
            return "not a PyTorch checkpoint (not a file written by torch.save)"
    first_sentence = str(error).strip().split(". ")[0].splitlines()[0] if str(error).strip() else type(error).__name__
    return f"not a PyTorch checkpoint (damaged: {first_sentence})"
