"""Every shell command of README.md and of the pages in docs/ runs as written at tiny sizes, or
carries a marker saying what it needs beyond this package and a CPU; every link between those
pages (and benchmarks/RESULTS.md) points to a file and heading that exist.

Commands are the lines of ``bash`` / ``sh`` / ``shell`` / ``console`` code blocks and inline code
in the prose that starts with a program (``make demo``, ``spmamba-prepare-demo --out ...``); an
inline command also written in a code block of any page, ``NAME=value`` settings aside, is the
block's. A command whose comment starts with a marker (``# setup``, ``# needs a GPU``, ``# needs
2 GPUs``, ``# needs the ... corpus``, ``# needs SpeechBrain's recipe folder``) is not run; every
other one is, in page order, in a fresh working directory per page and ``##`` section (a section
named in ``CONTINUES`` runs after, and in the directory of, the one it continues), on the CPU with
one thread, with only:

* tiny sizes set (``TINY_OPTIONS``: the value replaced where the command gives the option);
* ``DATA`` and ``/data/Libri2Mix`` replaced by a tiny corpus at the rate the command's hparams
  file sets, and ``[--option value]`` taken as ``--option value``;
* ``make TARGET`` run as the commands of its recipe (``make -n``), each with the above;
* the example inputs the pages take as given (``write_example_inputs``) in the directory.
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
# The pages whose commands run, README first; a page's name is its path from the repository root.
PAGES = ["README.md", *sorted(f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md"))]
# Pages whose links are checked besides: the benchmark results the pages cite.
LINKED_PAGES = [*PAGES, "benchmarks/RESULTS.md"]
# A (page, section) that works on what another made: it continues in that one's directory.
CONTINUES = {("docs/evaluation.md", "Score a model"): ("README.md", "Train")}
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
    """One documented command: its text without the comment, its marker ("" if none), and the
    page and ``##`` section it is written in."""

    text: str
    marker: str
    page: str
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


def page_commands(page, text):
    """The block commands and the inline commands of one page, each as (line number, Command)."""
    block_commands, inline_commands = [], []
    section, fence, pending = "", None, ""
    for number, line in enumerate(text.splitlines()):
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
        elif fence is None:
            section = line[3:].strip() if line.startswith("## ") else section
            inline_commands += [(number, Command(code, "", page, section)) for code in re.findall(r"`([^`]+)`", line)
                                if is_command(code)]
        elif fence in SHELL_LANGUAGES:
            line = pending + line.strip()
            pending = line[:-1] if line.endswith("\\") else ""
            if pending or not line or line.startswith("#"):
                continue
            command_text, comment = (re.split(r"\s+#\s*", line, maxsplit=1) + [""])[:2]
            marker = MARKER.match(comment)
            block_commands.append((number, Command(command_text, marker.group() if marker else "", page, section)))
    return block_commands, inline_commands


def documented_commands(texts):
    """The commands of the pages (``{page: text}``) in page order, then line order, each once:
    an inline command written in any page's code block is that block's (see the module docstring)."""
    per_page = {page: page_commands(page, text) for page, text in texts.items()}
    seen = {command_key(command.text) for blocks, _ in per_page.values() for _, command in blocks}
    commands = []
    for page, (block_commands, inline_commands) in per_page.items():
        for number, command in inline_commands:
            if command_key(command.text) not in seen:
                seen.add(command_key(command.text))
                block_commands.append((number, command))
        commands += [command for _, command in sorted(block_commands, key=lambda item: item[0])]
    return commands


def directory_of(page, section):
    """The (page, section) whose working directory a section's commands run in."""
    while (page, section) in CONTINUES:
        page, section = CONTINUES[(page, section)]
    return page, section


def run_groups(commands):
    """The unmarked commands by the (page, section) whose directory they run in, in page order:
    a section that continues another runs after it."""
    groups = {}
    for command in commands:
        if not command.marker:
            groups.setdefault(directory_of(command.page, command.section), []).append(command)
    return groups


def without_code_blocks(text):
    """A page's text without its fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def heading_anchors(text):
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as ``-``."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", without_code_blocks(text), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def page_links(text):
    """The targets of a page's Markdown links and images, code blocks and inline code left out."""
    return re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", re.sub(r"`[^`\n]*`", "", without_code_blocks(text)))


TEXTS = {page: (ROOT / page).read_text(encoding="utf-8") for page in PAGES}
COMMANDS = documented_commands(TEXTS)
GROUPS = run_groups(COMMANDS)


def write_example_inputs(workdir):
    """What the documented commands take as given: the repository's train.py, hparams/,
    pretrained/ and benchmarks/, tiny corpora at 8 and 16 kHz, data/test.csv with ``$data_root`` paths, meeting.wav,
    interview.flac, and a reference checkpoint best_model.pth with its conf.yml."""
    for name in ("train.py", "hparams", "pretrained", "benchmarks"):
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
    """Run one documented command in ``workdir`` on the CPU (see the module docstring)."""
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
    """The README has commands to run and marked ones; every docs page is read; the sections in
    CONTINUES exist, and each continued one has commands to run before those continuing it."""
    assert GROUPS and any(command.marker for command in COMMANDS)
    assert len(PAGES) > 1 and all(text.strip() for text in TEXTS.values())
    order = [(command.page, command.section) for command in COMMANDS if not command.marker]
    assert set(CONTINUES) <= set(order) and set(CONTINUES.values()) <= set(GROUPS)
    assert all(order.index(continued) < order.index(section) for section, continued in CONTINUES.items())


@pytest.mark.parametrize("page", PAGES)
def test_other_code_blocks_hold_no_commands(page):
    """Commands are written in shell code blocks, where the marker check sees them."""
    for language, body in re.findall(r"^```(\w*)\n(.*?)^```", TEXTS[page], re.M | re.S):
        if language not in SHELL_LANGUAGES:
            assert not [line for line in body.splitlines() if is_command(line)], language


@pytest.mark.parametrize("page", LINKED_PAGES)
def test_links_resolve(page):
    """Every relative link of the page names a file that exists and, after ``#``, one of its headings."""
    source = ROOT / page
    broken = []
    for link in page_links(source.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = (source.parent / path).resolve() if path else source
        if not target.exists() or (anchor and anchor not in heading_anchors(target.read_text(encoding="utf-8"))):
            broken.append(link)
    assert not broken, f"{page}: {broken}"


@pytest.mark.slow  # the documented commands: preparation, training, separation
@pytest.mark.parametrize("directory", list(GROUPS), ids=[f"{page}::{section}" for page, section in GROUPS])
def test_commands_run_as_written(directory, tmp_path):
    """The unmarked commands run in one directory, in order: its section's and those of the
    sections that continue it."""
    write_example_inputs(tmp_path)
    for command in GROUPS[directory]:
        run(command.text, tmp_path)
