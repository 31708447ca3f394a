"""Every shell command of README.md runs as written at tiny sizes, or carries a marker saying
what it needs beyond this package and a CPU.

Commands are the lines of ``bash`` / ``sh`` / ``shell`` / ``console`` code blocks and inline code
in the prose that starts with a program (``make demo``, ``spmamba-prepare-demo --out ...``); an
inline command also written in a code block, ``NAME=value`` settings aside, is the block's. A
command whose comment starts with a marker (``# setup``, ``# needs a GPU``, ``# needs 2 GPUs``,
``# needs the ... corpus``, ``# needs SpeechBrain's recipe folder``) is not run; every other one
is, in README order, in a fresh working directory per ``##`` section, on the CPU with one
thread, with only:

* tiny sizes set (``TINY_OPTIONS``: the value replaced where the command gives the option);
* ``DATA`` and ``/data/Libri2Mix`` replaced by a tiny corpus at the rate the command's hparams
  file sets, and ``[--option value]`` taken as ``--option value``;
* ``make TARGET`` run as the commands of its recipe (``make -n``), each with the above;
* the example inputs the README takes as given (``write_example_inputs``) in the directory.
"""

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from tests.conftest import TINY_OVERRIDES, write_corpus
from tests.reference_oracle import reference_state_dict

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
PROGRAMS = {"bash", "cd", "git", "make", "pip", "python", "python3", "sh", "torchrun"}
MARKER = re.compile(r"setup\b|needs (a GPU|\d+ GPUs|SpeechBrain's recipe folder|the .+ corpus|the .+ corpora)\b")
SETTINGS = re.compile(r"^(?:\w+=\S*\s+)*")
OPTIONAL = re.compile(r"\[(--[^\]]*)\]")
# A section that works on what an earlier one made: it continues in that one's directory.
CONTINUES = {"Separate recordings": "Train"}
TIMEOUT_S = 300

TINY_TRAINING = {**dict(zip(TINY_OVERRIDES[::2], TINY_OVERRIDES[1::2])), "--hop_length": "32",
                 "--training_signal_len": "2000", "--N_epochs": "1", "--num_test_plots": "0", "--lstm_hidden_dim": "4"}
TINY_OPTIONS = {
    # two training mixtures of 1 s, one validation and one test mixture
    "spmamba-prepare-demo": {"--hours-train": "0.0006", "--hours-valid": "0.0003", "--hours-test": "0.0003",
                             "--duration": "1", "--num-voices": "6", "--utterances-per-voice": "1",
                             "--num-noise-files": "3", "--num-clips": "3"},
    "train.py": TINY_TRAINING,  # the keys its hparams file has
}


@dataclass(frozen=True)
class Command:
    """One README command: its text without the comment, its marker ("" if none), its section."""

    text: str
    marker: str
    section: str


def is_command(code):
    """Whether inline code (or a line of a code block) starts with a program and gives it more
    than option names (``spmamba-export --config`` names an option)."""
    program, *arguments = SETTINGS.sub("", code).split() or [""]
    is_program = program in PROGRAMS or re.fullmatch(r"spmamba-[a-z0-9-]+", program) is not None
    return is_program and any(not argument.startswith("-") for argument in arguments)


def command_key(text):
    """A command without its leading ``NAME=value`` settings, whitespace normalised."""
    return " ".join(SETTINGS.sub("", text).split())


def readme_commands(readme):
    """The commands of a README text in order, each once (see the module docstring)."""
    block_commands, inline_commands = [], []
    section, fence, pending = "", None, ""
    for number, line in enumerate(readme.splitlines()):
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
        elif fence is None:
            section = line[3:].strip() if line.startswith("## ") else section
            inline_commands += [(number, Command(code, "", section)) for code in re.findall(r"`([^`]+)`", line)
                                if is_command(code)]
        elif fence in SHELL_LANGUAGES:
            line = pending + line.strip()
            pending = line[:-1] if line.endswith("\\") else ""
            if pending or not line or line.startswith("#"):
                continue
            text, comment = (re.split(r"\s+#\s*", line, maxsplit=1) + [""])[:2]
            marker = MARKER.match(comment)
            block_commands.append((number, Command(text, marker.group() if marker else "", section)))
    seen = {command_key(command.text) for _, command in block_commands}
    for number, command in inline_commands:
        if command_key(command.text) not in seen:
            seen.add(command_key(command.text))
            block_commands.append((number, command))
    return [command for _, command in sorted(block_commands, key=lambda item: item[0])]


def run_groups(commands):
    """The unmarked commands by the section whose directory they run in."""
    groups = {}
    for command in commands:
        if not command.marker:
            groups.setdefault(CONTINUES.get(command.section, command.section), []).append(command)
    return groups


README_TEXT = (ROOT / "README.md").read_text(encoding="utf-8")
COMMANDS = readme_commands(README_TEXT)
GROUPS = run_groups(COMMANDS)


def write_example_inputs(workdir):
    """What the README's commands take as given: the repository's train.py, hparams/ and
    pretrained/, tiny corpora at 8 and 16 kHz, data/test.csv with ``$data_root`` paths, meeting.wav,
    interview.flac, and a reference checkpoint best_model.pth with its conf.yml."""
    for name in ("train.py", "hparams", "pretrained"):
        (workdir / name).symlink_to(ROOT / name)
    for rate in (8000, 16000):
        write_corpus(workdir / f"corpus-{rate}", sizes=(("train", 2), ("valid", 1), ("test", 1)), seconds=0.25,
                     sample_rate=rate)
    (workdir / "data").mkdir()
    test_csv = (workdir / "corpus-16000" / "test.csv").read_text(encoding="utf-8")
    (workdir / "data" / "test.csv").write_text(test_csv.replace(str(workdir / "corpus-16000"), "$data_root"))
    noise = np.random.default_rng(0).standard_normal((16000, 2)).astype(np.float32) * 0.1
    sf.write(str(workdir / "meeting.wav"), noise[:8000, 0], 16000)
    sf.write(str(workdir / "interview.flac"), noise[:11025], 22050)
    torch.save(reference_state_dict(n_fft=256, n_srcs=2, n_layers=1, n_heads=1, emb_dim=4, emb_ks=4, d_state=4,
                                    expand=1, approx_qk_dim=129), workdir / "best_model.pth")
    network = dict(n_srcs=2, n_fft=256, stride=64, window="hann", n_imics=1, n_layers=1, attn_n_head=1,
                   attn_approx_qk_dim=129, emb_dim=4, emb_ks=4, emb_hs=1, activation="prelu", eps=1.0e-5)
    config = {"audionet": {"audionet_name": "TFGridNetMamba", "audionet_config": network},
              "datamodule": {"data_config": {"sample_rate": 8000}}}
    (workdir / "conf.yml").write_text(yaml.safe_dump(config))


def hparams_file(argv, workdir):
    """The hparams file a command names, or None."""
    return next((workdir / arg for arg in argv if arg.endswith(".yaml") and (workdir / arg).is_file()), None)


def with_placeholders(argv, workdir):
    """``DATA`` and ``/data/Libri2Mix`` as a tiny corpus at the rate of the command's hparams file."""
    hparams = hparams_file(argv, workdir)
    rate = int(re.search(r"^sample_rate:\s*(\d+)", hparams.read_text(), re.M).group(1)) if hparams else 16000
    corpus = str(workdir / f"corpus-{rate}")
    return [corpus if arg in ("DATA", "/data/Libri2Mix") else arg for arg in argv]


def with_tiny_options(argv, workdir):
    """The command with ``TINY_OPTIONS`` set: a given value replaced, a missing option appended."""
    script = Path(argv[1] if Path(argv[0]).name.startswith("python") and len(argv) > 1 else argv[0]).name
    options = TINY_OPTIONS.get(script, {})
    if script == "train.py":
        keys = set(re.findall(r"^(\w+):", hparams_file(argv, workdir).read_text(), re.M))
        options = {option: value for option, value in options.items() if option[2:] in keys}
    argv = list(argv)
    for option, value in options.items():
        if option in argv:
            argv[argv.index(option) + 1] = value
        else:
            argv += [option, value]
    return argv


def make_recipe(argv, env):
    """The commands ``make`` would run for the targets, with this interpreter's environment
    as the Makefile's ``VENV`` (taken as installed)."""
    venv = BIN.parent
    dry_run = subprocess.run(["make", "--no-print-directory", "-n", "-C", str(ROOT), f"VENV={venv}",
                              "-o", f"{venv}/.installed", *argv[1:]], env=env, capture_output=True, text=True)
    assert dry_run.returncode == 0, dry_run.stderr
    return dry_run.stdout.replace("\\\n", " ").splitlines()


def run(text, workdir):
    """Run one README command in ``workdir`` on the CPU (see the module docstring)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           **dict(re.findall(r"(\w+)=(\S*)", SETTINGS.match(text).group()))}
    argv = shlex.split(OPTIONAL.sub(r"\1", SETTINGS.sub("", text)))
    if argv[0] == "make":
        for line in make_recipe(argv, env):
            run(line, workdir)
        return
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    elif (BIN / argv[0]).is_file():
        argv[0] = str(BIN / argv[0])
    argv = with_tiny_options(with_placeholders(argv, workdir), workdir)
    result = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, f"{text}\nran: {shlex.join(argv)}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"


def test_commands_are_found():
    """The README has commands to run and marked ones; the sections others continue in exist."""
    assert GROUPS and any(command.marker for command in COMMANDS)
    assert set(CONTINUES.values()) <= set(GROUPS)


def test_other_code_blocks_hold_no_commands():
    """Commands are written in shell code blocks, where the marker check sees them."""
    for language, body in re.findall(r"^```(\w*)\n(.*?)^```", README_TEXT, re.M | re.S):
        if language not in SHELL_LANGUAGES:
            assert not [line for line in body.splitlines() if is_command(line)], language


@pytest.mark.slow  # the README's commands: preparation, training, separation
@pytest.mark.parametrize("section", list(GROUPS))
def test_commands_run_as_written(section, tmp_path):
    """The section's unmarked commands, in order, in one working directory."""
    write_example_inputs(tmp_path)
    for command in GROUPS[section]:
        run(command.text, tmp_path)
