"""The ``data`` extra: packages that only the corpus simulation needs, imported when first used."""

import importlib
from types import ModuleType

#: Modules of the ``data`` extra (``pip install "spmamba-sb[data]"``): loudness, rooms, espeak-ng.
DATA_MODULES = ("pyloudnorm", "pyroomacoustics", "espeakng_loader")


def import_data_extra(name: str, user: str) -> ModuleType:
    """Import ``name``, one of :data:`DATA_MODULES`, saying how to install the extra when it is missing.

    Arguments
    ---------
    name : str
        Module to import.
    user : str
        What needs it (a command or class name), for the error message.

    Returns
    -------
    ModuleType
        The imported module.

    Raises
    ------
    ImportError
        If ``name`` cannot be imported: ``<user> needs the data extra (cannot import <name>): pip install ...``.

    Example
    -------
    >>> import_data_extra("pyloudnorm", "measure_loudness").__name__
    'pyloudnorm'
    """
    try:
        return importlib.import_module(name)
    except ImportError as error:
        message = f'{user} needs the data extra (cannot import {name}): pip install "spmamba-sb[data]"'
        raise ImportError(message) from error
