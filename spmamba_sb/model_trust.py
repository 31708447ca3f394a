"""What a model folder's ``hyperparams.yaml`` may build: an allow-list, checked on the text
before anything is built.

HyperPyYAML builds whatever a tag names (``!new:``, ``!name:``, ``!apply:``, ``!applyref:``,
``!module:``) and reads other files (``!include:``), so loading a downloaded folder would run any
code it names. :func:`check_model_yaml` reads the file's YAML nodes with ruamel's composer (each
tag and its line; nothing is constructed) and passes it only if:

* every class it names (``!new:``, ``!name:``) is a ``torch.nn.Module`` of this package,
  ``torch.nn`` or SpeechBrain's network modules (:data:`CLASS_MODULES` but
  :data:`REFUSED_MODULES`), or one of :data:`ALLOWED_CLASSES`; a name is checked as text first,
  and only a name that passes is imported to check the object;
* every function it names is one of :data:`ALLOWED_FUNCTIONS`;
* its other tags are HyperPyYAML's data tags (``!ref``, ``!copy``, ``!tuple``,
  ``!PLACEHOLDER``) and YAML's own (``!!str``, ``!!int``, ...), never ``!module:``, ``!include:``
  or a Python tag (``!!python/...``);
* no text holds a ``!`` (HyperPyYAML reads a text that looks like a tuple, ``(...)``, with
  PyYAML's full loader, where ``!!python/object/apply:`` runs code, and ``!ref`` can assemble
  such a text from pieces), and no reference ``<key.attribute>`` reaches a private attribute.

Example
-------
>>> folder = getfixture("tmp_path")
>>> _ = (folder / "hyperparams.yaml").write_text("layer: !new:torch.nn.Linear [2, 2]\\n"
...                                              "pwn: !apply:os.system [touch marker]\\n")
>>> check_model_yaml(str(folder / "hyperparams.yaml"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
  ...
spmamba_sb.model_trust.UntrustedModelError: .../hyperparams.yaml line 2: !apply:os.system is not on the allow-list ...
"""

import inspect
import pydoc
import re
from typing import Iterator, Optional, Tuple

import ruamel.yaml
import torch.nn as nn
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

TRUST_HINT = "pass --trust-model-code / trust_code=True if you trust this folder"
#: Tags that build an object they name; a class or an allowed function.
OBJECT_TAGS = ("!new:", "!name:", "!apply:", "!applyref:")
#: Tags that only call a function: never a class.
CALL_TAGS = ("!apply:", "!applyref:")
#: Refused whatever they name, and why.
REFUSED_TAGS = {"!module:": "a module gives access to everything in it", "!include:": "it reads another file"}
#: HyperPyYAML's tags that build nothing.
DATA_TAGS = frozenset({"!ref", "!copy", "!tuple", "!PLACEHOLDER"})
#: YAML's own tags for data (what the composer gives untagged nodes, or ``!!str`` and the like).
YAML_PREFIX = "tag:yaml.org,2002:"
YAML_DATA_TAGS = frozenset(YAML_PREFIX + name for name in
                           ("str", "int", "float", "bool", "null", "seq", "map", "timestamp", "merge", "value"))
#: Modules whose ``torch.nn.Module`` classes a model folder may build, with everything under them.
CLASS_MODULES = ("spmamba_sb", "torch.nn", "speechbrain.nnet", "speechbrain.lobes", "speechbrain.processing")
#: Modules under :data:`CLASS_MODULES` whose classes download, unpickle or write files when built.
REFUSED_MODULES = ("speechbrain.lobes.models.beats", "speechbrain.lobes.models.discrete",
                   "speechbrain.lobes.models.fairseq_wav2vec", "speechbrain.lobes.models.MSTacotron2",
                   "speechbrain.processing.PLDA_LDA")
#: Classes that are not modules but a model folder needs: the loader of its weights.
ALLOWED_CLASSES = frozenset({"speechbrain.utils.parameter_transfer.Pretrainer"})
#: The only functions a model folder may name: activations, which compute on tensors only.
ALLOWED_FUNCTIONS = frozenset(f"torch.nn.functional.{name}" for name in (
    "elu", "gelu", "leaky_relu", "log_softmax", "relu", "sigmoid", "silu", "softmax", "softplus", "tanh"))
DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
REFERENCE = re.compile(r"<([^>]*)>")  # HyperPyYAML's <key> and <key.attribute>


class UntrustedModelError(ValueError):
    """A model folder's ``hyperparams.yaml`` that names code outside the allow-list (or cannot be
    read to check it); the message is ``<file> line <N>: <what> ...``.

    Example
    -------
    >>> issubclass(UntrustedModelError, ValueError)
    True
    """


def check_model_yaml(path: str) -> None:
    """Check a model folder's ``hyperparams.yaml`` against the allow-list, building nothing.

    Arguments
    ---------
    path : str
        The ``hyperparams.yaml`` file.

    Raises
    ------
    UntrustedModelError
        At the first tag, name or text the allow-list does not pass (see the module's
        docstring), naming the line; or if the file is not UTF-8 text or not valid YAML.
    OSError
        If the file cannot be read.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> _ = (folder / "hyperparams.yaml").write_text(
    ...     "n_fft: 64\\nEncoder: !new:spmamba_sb.trio.Encoder\\n    n_fft: !ref <n_fft>\\n    hop_length: 16\\n")
    >>> check_model_yaml(str(folder / "hyperparams.yaml"))
    """
    try:
        with open(path, encoding="utf-8") as handle:
            root = ruamel.yaml.YAML().compose(handle)
    except UnicodeDecodeError as error:
        raise UntrustedModelError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    except ruamel.yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UntrustedModelError(f"{path}{where}: not valid YAML ({problem}), so it cannot be checked") from error
    for node in _nodes(root):
        problem = _problem(node)
        if problem is not None:
            raise UntrustedModelError(f"{path} line {node.start_mark.line + 1}: {problem} ({TRUST_HINT})")


def _nodes(root: Optional[Node]) -> Iterator[Node]:
    """Every node of the tree once, keys included (an alias is the node it names)."""
    seen, pending = set(), [root] if root is not None else []
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        if isinstance(node, MappingNode):
            pending.extend(item for pair in reversed(node.value) for item in reversed(pair))
        elif isinstance(node, SequenceNode):
            pending.extend(reversed(node.value))


def _problem(node: Node) -> Optional[str]:
    """Why the allow-list refuses this node, or None."""
    tag = node.tag
    if isinstance(node, ScalarNode):
        if "!" in node.value:
            return (f"the text {_shorten(node.value)!r} holds a '!', which is not on the allow-list of a model "
                    "folder (HyperPyYAML reads a text like '(...)' as YAML, where '!!python/' tags run code)")
        for reference in REFERENCE.findall(node.value):
            if any(attribute.startswith("_") for attribute in reference.split(".")[1:]):
                return f"<{reference}> reaches a private attribute, which is not on the allow-list of a model folder"
    if tag in DATA_TAGS or tag in YAML_DATA_TAGS:
        return None
    shown = "!!" + tag[len(YAML_PREFIX):] if tag.startswith(YAML_PREFIX) else tag
    for prefix, reason in REFUSED_TAGS.items():
        if tag.startswith(prefix):
            return f"{shown} is not on the allow-list of a model folder: {reason}"
    kind, name = _split_tag(tag)
    if kind is None or not _allowed(kind, name):
        return f"{shown} is not on the allow-list of a model folder"
    return None


def _split_tag(tag: str) -> Tuple[Optional[str], str]:
    """``("!new:", "torch.nn.Linear")`` for ``"!new:torch.nn.Linear"``; ``(None, tag)`` for a tag
    that names no object."""
    for prefix in OBJECT_TAGS:
        if tag.startswith(prefix):
            return prefix, tag[len(prefix):]
    return None, tag


def _allowed(kind: str, name: str) -> bool:
    """Whether a tag of ``kind`` may build ``name``: checked as text, then (only if the text
    passes, so only allowed modules are imported) as the object it names."""
    if not DOTTED_NAME.fullmatch(name):
        return False
    if name in ALLOWED_FUNCTIONS:
        return inspect.isroutine(_locate(name))
    if kind in CALL_TAGS:
        return False
    if name in ALLOWED_CLASSES:
        return inspect.isclass(_locate(name))
    if not _in_class_modules(name):
        return False
    target = _locate(name)
    return (inspect.isclass(target) and issubclass(target, nn.Module)
            and _in_class_modules(f"{target.__module__}.{target.__qualname__}"))


def _in_class_modules(name: str) -> bool:
    """Whether the dotted ``name`` lies under :data:`CLASS_MODULES` and not under :data:`REFUSED_MODULES`."""
    def under(prefixes):
        return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)

    return under(CLASS_MODULES) and not under(REFUSED_MODULES)


def _locate(name: str) -> object:
    """The object ``name`` names, as HyperPyYAML finds it (``pydoc.locate``), or None."""
    try:
        return pydoc.locate(name)
    except pydoc.ErrorDuringImport:
        return None


def _shorten(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."
