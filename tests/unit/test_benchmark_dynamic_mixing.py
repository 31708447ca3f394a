"""benchmarks/dynamic_mixing.py pools a training CSV's sources and times drawing mixtures from it."""

import json

import torch

from tests.conftest import load_benchmark, write_corpus


def test_the_pool_of_a_corpus_and_the_mixtures_per_second(tmp_path, capsys):
    data = write_corpus(tmp_path / "corpus", sizes=(("train", 4),), with_speakers=True)
    threads = torch.get_num_threads()
    try:
        load_benchmark("dynamic_mixing").main(["--data", str(data), "--seconds", "0.25", "--count", "5"])
    finally:
        torch.set_num_threads(threads)  # the script runs on one thread, as one DataLoader worker
    report = json.loads(capsys.readouterr().out)
    assert report["speakers"] == 3 and report["sources"] == 8 and report["backgrounds"] == 0  # 4 rows x 2 sources
    assert report["sample_rate"] == 16000 and report["seconds"] == 0.25
    assert report["mixtures_per_s"] > 0
    assert abs(report["audio_s_per_s"] - 0.25 * report["mixtures_per_s"]) <= 0.1 + 1e-3 * report["audio_s_per_s"]
