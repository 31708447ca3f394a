"""A training hparams file with its command-line overrides, checked before anything is built.

``train.py`` loads its hparams through :func:`load_hparams`: a missing file (with the closest
names beside it), an override the file has no key for (with the closest keys), bad YAML, a
number out of range, a flag this package does not read, or a value an object of the file
refuses raises one :class:`SettingsError` whose message is a single line, before any object is
built or any file written.

Example
-------
>>> folder = getfixture("tmp_path")
>>> _ = (folder / "train.yaml").write_text("batch_size: 4\\nlr: 0.001\\n")
>>> load_hparams(str(folder / "train.yaml"), "batch_size: 8")["batch_size"]
8
>>> try:
...     load_hparams(str(folder / "train.yaml"), "batch_sise: 8")
... except SettingsError as error:
...     str(error).endswith("has no such key; did you mean --batch_size?")
True
"""

import difflib
import math
import os
from typing import Any, Dict, List

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references

#: Flags that only SpeechBrain's stock recipes read; set here, they would silently do nothing.
UNSUPPORTED_FLAGS = ("use_wham_noise",)
#: Numeric settings checked before anything runs: key -> (whole numbers only, least value).
SETTING_RANGES = {
    "batch_size": (True, 1), "N_epochs": (True, 1), "num_spks": (True, 1), "sample_rate": (True, 1),
    "training_signal_len": (True, 1), "train_epoch_size": (True, 1), "num_test_plots": (True, 0),
    "nonfinite_patience": (True, 0), "lr": (False, 0), "ckpt_interval_minutes": (False, 0),
    "max_train_minutes": (False, 0),
}
#: Settings of :data:`SETTING_RANGES` that may also be null.
NULLABLE_SETTINGS = ("train_epoch_size", "max_train_minutes")


class SettingsError(ValueError):
    """An hparams file or override that cannot be used; the message is one line naming the key,
    the value or the file.

    Example
    -------
    >>> issubclass(SettingsError, ValueError)
    True
    """


def load_hparams(hparams_file: str, overrides: str = "") -> Dict[str, Any]:
    """The hparams file with the overrides, its objects built once the settings are checked.

    Arguments
    ---------
    hparams_file : str
        The HyperPyYAML file.
    overrides : str
        YAML text of the command line's overrides (SpeechBrain's ``parse_arguments`` gives it).

    Returns
    -------
    dict
        The loaded hparams (objects built).

    Raises
    ------
    SettingsError
        See the module's docstring; nothing has been built then.
    """
    if not os.path.isfile(hparams_file):
        close = closest_hparams_files(hparams_file)
        raise SettingsError(f"no hparams file {hparams_file!r}" + (f"; did you mean {' or '.join(close)}?"
                                                                   if close else ""))
    yaml = ruamel.yaml.YAML()  # the parser hyperpyyaml uses; tags are kept, nothing is built
    try:
        with open(hparams_file, encoding="utf-8") as handle:
            keys = [str(key) for key in (yaml.load(handle) or {}) if not str(key).startswith("__")]
        for key in (yaml.load(overrides) if overrides else None) or {}:
            if key not in keys:
                close = difflib.get_close_matches(str(key), keys)
                hint = f"; did you mean {' or '.join('--' + name for name in close)}?" if close else ""
                raise SettingsError(f"--{key}: {hparams_file} has no such key{hint}")
        with open(hparams_file, encoding="utf-8") as handle:
            check_settings(yaml.load(resolve_references(handle, overrides)), hparams_file)
        with open(hparams_file, encoding="utf-8") as handle:
            return load_hyperpyyaml(handle, overrides)
    except ruamel.yaml.YAMLError as error:
        raise SettingsError(f"bad YAML in {hparams_file} or its overrides: {' '.join(str(error).split())}") from None
    except SettingsError:
        raise
    except ValueError as error:  # a !PLACEHOLDER left unset, or a value an object of the file refuses
        raise SettingsError(f"{hparams_file}: {error}") from None


def closest_hparams_files(path: str) -> List[str]:
    """The YAML files beside a missing ``path`` whose names are closest to its name.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> _ = (folder / "spmamba.yaml").write_text("")
    >>> [os.path.basename(name) for name in closest_hparams_files(str(folder / "spmaba.yaml"))]
    ['spmamba.yaml']
    """
    folder = os.path.dirname(path)
    if not os.path.isdir(folder or "."):
        return []
    names = [name for name in os.listdir(folder or ".") if name.endswith((".yaml", ".yml"))]
    return [os.path.join(folder, name) for name in difflib.get_close_matches(os.path.basename(path), names)]


def check_settings(settings: Dict[str, Any], hparams_file: str) -> None:
    """Raise at the first numeric setting out of range (:data:`SETTING_RANGES`), a flag this
    package does not read, or dynamic mixing without fixed-length crops.

    Arguments
    ---------
    settings : dict
        The hparams with references and overrides resolved, before any object is built.
    hparams_file : str
        Its file, for the messages.

    Raises
    ------
    SettingsError
        Naming the key and value.

    Example
    -------
    >>> try:
    ...     check_settings({"batch_size": -2}, "train.yaml")
    ... except SettingsError as error:
    ...     str(error)
    'batch_size=-2 must be a whole number >= 1'
    """
    for key, (integers_only, least) in SETTING_RANGES.items():
        if key not in settings or (settings[key] is None and key in NULLABLE_SETTINGS):
            continue
        value = settings[key]
        kinds = (int,) if integers_only else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not value >= least or not math.isfinite(value):
            kind = "a whole number" if integers_only else "a number"
            nullable = " (or null)" if key in NULLABLE_SETTINGS else ""
            raise SettingsError(f"{key}={value!r} must be {kind} >= {least}{nullable}")
    enabled = [flag for flag in UNSUPPORTED_FLAGS if settings.get(flag)]
    if enabled:
        raise SettingsError(f"{hparams_file}: {enabled} are read by SpeechBrain's stock recipes only; set them False here")
    if settings.get("dynamic_mixing") and not settings.get("limit_training_signal_len"):
        raise SettingsError("dynamic_mixing needs limit_training_signal_len: True (mixtures of training_signal_len samples)")
