"""The package's import rules: arrows point down (cli -> inference / export -> trio -> models -> nnet;
the scorer, shared by train.py's test stage and spmamba-evaluate, below the application)."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "spmamba_sb"
# module prefix -> prefixes it must never import
APPLICATION = ["spmamba_sb.brain", "spmamba_sb.inference", "spmamba_sb.export", "spmamba_sb.chunking",
               "spmamba_sb.scoring_sets", "spmamba_sb.environment", "spmamba_sb.cli"]
FORBIDDEN = {
    "spmamba_sb.nnet": ["speechbrain", "spmamba_sb.models", "spmamba_sb.trio", "spmamba_sb.data", *APPLICATION],
    "spmamba_sb.models": ["speechbrain", "spmamba_sb.trio", "spmamba_sb.data", *APPLICATION],
    "spmamba_sb.data": ["spmamba_sb.nnet", "spmamba_sb.models", "spmamba_sb.trio", *APPLICATION],
    "spmamba_sb.trio": APPLICATION,
    # model folders' files stand below the trio, which upgrades older folders' arguments with them
    "spmamba_sb.model_folder": ["spmamba_sb.trio", *APPLICATION],
    "spmamba_sb.chunking": ["spmamba_sb.nnet", "spmamba_sb.models", "spmamba_sb.trio", *APPLICATION],
    "spmamba_sb.export": ["spmamba_sb.brain", "spmamba_sb.inference", "spmamba_sb.chunking", "spmamba_sb.cli"],
    "spmamba_sb.inference": ["spmamba_sb.brain", "spmamba_sb.export", "spmamba_sb.scoring_sets", "spmamba_sb.cli"],
    # training does not depend on the inference interface: the test stage scores with the scorer alone
    "spmamba_sb.brain": ["spmamba_sb.inference", "spmamba_sb.export", "spmamba_sb.scoring_sets", "spmamba_sb.cli"],
    "spmamba_sb.scoring_sets": ["spmamba_sb.brain", "spmamba_sb.export", "spmamba_sb.cli"],
    # the scorer and its figures: metrics, rows, files; never a model
    **{scorer: ["spmamba_sb.nnet", "spmamba_sb.models", "spmamba_sb.trio", *APPLICATION]
       for scorer in ("spmamba_sb.scoring", "spmamba_sb.plots")},
    "spmamba_sb.schedules": ["spmamba_sb.nnet", "spmamba_sb.models", "spmamba_sb.trio", "spmamba_sb.data",
                             *APPLICATION],
    # the boundary's helpers (how a command ends, writing files, loading tensor files, checking a
    # model folder or a training's settings) stand below everything else
    **{helper: ["spmamba_sb.nnet", "spmamba_sb.models", "spmamba_sb.trio", "spmamba_sb.data", *APPLICATION]
       for helper in ("spmamba_sb.console", "spmamba_sb.outputs", "spmamba_sb.tensor_files",
                      "spmamba_sb.model_trust", "spmamba_sb.settings")},
    "spmamba_sb": ["train", "recipes", "benchmarks", "tests"],
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        yield name, path


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def _matches(name, prefix):
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("module,path", list(_modules()), ids=[m for m, _ in _modules()])
def test_imports_point_down(module, path):
    imported = set(_imports(path))
    for owner, forbidden in FORBIDDEN.items():
        if _matches(module, owner):
            bad = sorted(name for name in imported for prefix in forbidden if _matches(name, prefix))
            assert not bad, f"{module} imports {bad}"
    if module != "spmamba_sb.nnet.scan":
        assert not any(_matches(name, "mamba_ssm") for name in imported), f"{module} imports mamba_ssm"


def _import_lines(path):
    """(line, module) of each import of ``path``, in source order."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            lines += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            lines.append((node.lineno, node.module))
    return sorted(lines)


TRAIN_SCRIPT = PACKAGE.parent / "train.py"


@pytest.mark.parametrize("module,path", [*_modules(), ("train", TRAIN_SCRIPT)],
                         ids=[*(m for m, _ in _modules()), "train"])
def test_speechbrain_and_torchaudio_come_after_the_torch_pair_check(module, path):
    """A mismatched torchaudio fails inside SpeechBrain's imports; spmamba_sb.torch_pair names it first."""
    lines = _import_lines(path)
    guarded = [line for line, name in lines if name == "spmamba_sb.torch_pair"]
    if module == "spmamba_sb.torch_pair":
        return
    for line, name in lines:
        if any(_matches(name, prefix) for prefix in ("speechbrain", "torchaudio")):
            assert guarded and guarded[0] < line, f"{module}:{line} imports {name} before spmamba_sb.torch_pair"
