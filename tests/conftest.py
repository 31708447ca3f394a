"""Skip tests marked ``gpu`` where no CUDA device is present; helpers shared by the tests."""

import importlib.util
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
    """Under pytest-xdist, the workers share the cores: torch's default of one thread per core in
    each of N workers would ask N times as many threads as there are cores, and oversubscribed
    threads wait on one another at every parallel operation."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // workers))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def exit_status(main, *argv):
    """Run a console entry point (``cli.separate_main`` ...) on ``argv`` in this process: its exit status."""
    try:
        main([str(arg) for arg in argv])
    except SystemExit as exit_:
        return exit_.code
    return 0


def load_benchmark(name):
    """The module ``benchmarks/<name>.py`` (benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY_OVERRIDES = [
    "--n_fft", "64", "--hop_length", "16", "--emb_dim", "4", "--emb_kernel_size", "4", "--num_blocks", "1",
    "--num_heads", "1", "--attention_qk_dim", "33", "--d_state", "4", "--expand", "1",
    "--training_signal_len", "4000", "--batch_size", "2", "--N_epochs", "2", "--num_test_plots", "1",
]


def write_corpus(root, num_spks=2, sizes=(("train", 4), ("valid", 2), ("test", 2)), seconds=0.5, sample_rate=16000,
                  with_speakers=False):
    """Synthetic separation corpus: harmonic sources with onsets, SpeechBrain CSVs per split; with
    ``with_speakers`` also ``s<i>_spk`` columns (num_spks + 1 speakers, distinct within a row)."""
    import csv
    import math

    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    length = int(seconds * sample_rate)
    t = torch.arange(length) / sample_rate
    gen = torch.Generator().manual_seed(0)
    for split, count in sizes:
        rows = []
        for index in range(count):
            sources = []
            for spk in range(num_spks):
                f0 = 100 + 300 * torch.rand(1, generator=gen).item()
                onset = torch.rand(1, generator=gen).item() * seconds / 2
                voice = sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 8))
                sources.append(0.2 * voice * (t > onset).float())
            item = f"{split}{index}"
            paths = {}
            for spk, source in enumerate(sources, start=1):
                paths[f"s{spk}_wav"] = str(root / f"{item}_s{spk}.wav")
                sf.write(paths[f"s{spk}_wav"], source.numpy(), sample_rate)
            paths["mix_wav"] = str(root / f"{item}_mix.wav")
            sf.write(paths["mix_wav"], torch.stack(sources).sum(0).numpy(), sample_rate)
            speakers = {f"s{spk}_spk": f"v{(index + spk) % (num_spks + 1)}" for spk in range(1, num_spks + 1)}
            rows.append({"ID": item, "duration": seconds, **paths, **(speakers if with_speakers else {})})
        columns = ["ID", "duration", "mix_wav"] + [f"s{i}_wav" for i in range(1, num_spks + 1)]
        columns += [f"s{i}_spk" for i in range(1, num_spks + 1)] if with_speakers else []
        with open(root / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    return root


@pytest.fixture
def tiny_corpus(tmp_path):
    """A two-speaker synthetic corpus of a few short mixtures."""
    return write_corpus(tmp_path / "corpus")
