"""The package's environment variables, read once where a command starts (``train.py``,
``spmamba-separate``, ``spmamba-evaluate``) and nowhere else.

``SPMAMBA_SCAN_BACKEND`` (``auto``, ``cuda``, ``triton`` or ``torch``) replaces the scan backend
``"auto"`` of the model's Mamba layers; ``train.py`` turns it into the override
``scan_backend: <name>``, so the experiment's ``hyperparams.yaml`` records what ran.
``SPMAMBA_COMPILE_SCAN=1`` runs the PyTorch scan through ``torch.compile`` on a CPU when
autograd is off (inference, validation). In Python, pass ``scan_backend`` to the model, or call
:func:`~spmamba_sb.nnet.mixer.configure_scan`. PyTorch's own ``TORCHINDUCTOR_MIX_ORDER_REDUCTION``,
when set, decides Inductor's mix-order reduction; unset, a compiled training run turns that pass off
(:func:`avoid_mix_order_reduction`).

Example
-------
>>> scan_environment({"SPMAMBA_SCAN_BACKEND": "torch"})
ScanEnvironment(backend='torch', compile_torch_scan=False)
"""

import logging
import os
from typing import Iterable, Mapping, NamedTuple, Optional

import ruamel.yaml
import torch.nn as nn

from spmamba_sb.nnet.mixer import configure_scan
from spmamba_sb.nnet.scan import SCAN_BACKENDS
from spmamba_sb.settings import SettingsError

logger = logging.getLogger(__name__)

SCAN_BACKEND_VAR = "SPMAMBA_SCAN_BACKEND"
COMPILE_SCAN_VAR = "SPMAMBA_COMPILE_SCAN"
MIX_ORDER_REDUCTION_VAR = "TORCHINDUCTOR_MIX_ORDER_REDUCTION"


class ScanEnvironment(NamedTuple):
    """What the environment asks of the scan."""

    backend: Optional[str]  # replaces "auto" (SPMAMBA_SCAN_BACKEND); None when unset
    compile_torch_scan: bool  # SPMAMBA_COMPILE_SCAN=1


def scan_environment(environ: Mapping[str, str] = os.environ) -> ScanEnvironment:
    """Read ``SPMAMBA_SCAN_BACKEND`` and ``SPMAMBA_COMPILE_SCAN``.

    Arguments
    ---------
    environ : Mapping
        The environment (default: the process's).

    Returns
    -------
    ScanEnvironment

    Raises
    ------
    SettingsError
        On a backend that is not one of ``SCAN_BACKENDS``, or ``SPMAMBA_COMPILE_SCAN`` other
        than ``0`` or ``1``.

    Example
    -------
    >>> scan_environment({})
    ScanEnvironment(backend=None, compile_torch_scan=False)
    """
    backend = environ.get(SCAN_BACKEND_VAR, "").strip().lower() or None
    if backend is not None and backend not in SCAN_BACKENDS:
        raise SettingsError(f"{SCAN_BACKEND_VAR}={environ[SCAN_BACKEND_VAR]!r} is not one of {SCAN_BACKENDS}")
    compile_flag = environ.get(COMPILE_SCAN_VAR, "").strip()
    if compile_flag not in ("", "0", "1"):
        raise SettingsError(f"{COMPILE_SCAN_VAR}={compile_flag!r} must be 0 or 1")
    return ScanEnvironment(backend, compile_flag == "1")


def with_scan_backend(hparams_file: str, overrides: str, environment: ScanEnvironment) -> str:
    """The command line's overrides, with ``scan_backend: <name>`` added when the environment
    names a backend and the hparams file's ``scan_backend`` (after the overrides) is ``auto``.

    Arguments
    ---------
    hparams_file : str
        The HyperPyYAML file (read as plain YAML; nothing is built).
    overrides : str
        YAML text of the command line's overrides.
    environment : ScanEnvironment
        From :func:`scan_environment`.

    Returns
    -------
    str
        The overrides to load the file with (and to save beside it).

    Example
    -------
    >>> path = getfixture("tmp_path") / "train.yaml"
    >>> _ = path.write_text("scan_backend: auto\\n")
    >>> with_scan_backend(str(path), "", ScanEnvironment("torch", False))
    'scan_backend: torch\\n'
    """
    if environment.backend is None:
        return overrides
    yaml = ruamel.yaml.YAML()
    with open(hparams_file, encoding="utf-8") as handle:
        settings = yaml.load(handle) or {}
    given = (yaml.load(overrides) if overrides else None) or {}
    if "scan_backend" not in settings or given.get("scan_backend", settings["scan_backend"]) != "auto":
        return overrides
    logger.info("%s=%s: scan_backend auto -> %s", SCAN_BACKEND_VAR, environment.backend, environment.backend)
    return (overrides.rstrip("\n") + "\n" if overrides.strip() else "") + f"scan_backend: {environment.backend}\n"


def apply_scan_environment(modules: Iterable[nn.Module], environment: ScanEnvironment) -> int:
    """Give the Mamba layers of ``modules`` what the environment asks (see
    :func:`~spmamba_sb.nnet.mixer.configure_scan`) and log it when it asks anything.

    Returns
    -------
    int
        How many Mamba layers the modules hold.

    Example
    -------
    >>> from spmamba_sb.nnet.bmamba import BMamba
    >>> apply_scan_environment([BMamba(d_model=8, d_state=4, expand=2)], ScanEnvironment("torch", True))
    2
    """
    count = sum(configure_scan(module, environment.backend, environment.compile_torch_scan) for module in modules)
    if count and (environment.backend or environment.compile_torch_scan):
        logger.info("scan of %d Mamba layers from the environment: backend %s, compiled PyTorch scan %s", count,
                    environment.backend or "as set", "on" if environment.compile_torch_scan else "off")
    return count


def avoid_mix_order_reduction(environ: Mapping[str, str] = os.environ) -> bool:
    """Turn off Inductor's mix-order reduction before ``torch.compile`` traces the model, unless
    ``TORCHINDUCTOR_MIX_ORDER_REDUCTION`` is set (then PyTorch reads it as usual).

    In PyTorch 2.10 and 2.11 this pass, which fuses a norm's two backward reductions over tensors of
    at least 5 Mi elements, returns the norm gain's gradient in the wrong shape (pytorch/pytorch#178080):
    compiled, the 16 kHz model at batch 8 (2 s crops) stops at its first backward. Without the pass it
    trains, and the batch-4 step takes the same time (256 ms on an H100 either way,
    ``benchmarks/RESULTS.md``).

    Arguments
    ---------
    environ : Mapping
        The environment (default: the process's).

    Returns
    -------
    bool
        True when the pass was on and is now off.

    Example
    -------
    >>> avoid_mix_order_reduction({MIX_ORDER_REDUCTION_VAR: "1"})
    False
    """
    from torch._inductor import config  # imported only where a model is compiled

    if MIX_ORDER_REDUCTION_VAR in environ or not getattr(config.triton, "mix_order_reduction", False):
        return False
    config.triton.mix_order_reduction = False
    logger.info("Inductor's mix-order reduction off for torch.compile (pytorch/pytorch#178080; "
                "%s=1 turns it on)", MIX_ORDER_REDUCTION_VAR)
    return True
