"""The download-free demo: synthetic corpora in the real layouts, then the same Echo2Mix pipeline."""

import csv
import json
from pathlib import Path

import pytest
import soundfile as sf

from spmamba_sb.data.corpora import SPLITS, scan_background_folder, scan_librispeech
from spmamba_sb.data.demo_corpus import DEMO_HOURS, build_demo_corpora, demo_sizes, prepare_demo, voice_profiles

#: 2 s mixtures: 3 train, 1 valid, 1 test.
HOURS = {"train": 6 / 3600, "valid": 2 / 3600, "test": 2 / 3600}
SIZES = {"num_voices": 8, "utterances_per_voice": 2, "num_noise_files": 3, "num_clips": 3}
FAST = dict(rt60=(0.15, 0.3), room_min=(3.0, 3.0, 2.5), room_max=(4.0, 4.0, 3.0), num_rays=300)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    output = tmp_path_factory.mktemp("demo") / "demo"
    result = prepare_demo(str(output), hours=HOURS, duration=2.0, sample_rate=8000, sizes=SIZES, seed=0,
                          num_workers=2, show_progress=False, simulation_options=FAST)
    return output, result


def test_demo_sources_use_the_real_layouts(demo):
    output, _ = demo
    speakers = scan_librispeech(str(output / "sources" / "LibriSpeech"))
    assert len(speakers) == 8 and all(len(files) == 2 for files in speakers.values())
    utterance = speakers["1000"][0]
    assert utterance.endswith("LibriSpeech/demo/1000/1/1000-1-0000.flac") and sf.info(utterance).samplerate == 8000
    transcript = (output / "sources" / "LibriSpeech" / "demo" / "1000" / "1" / "1000-1.trans.txt").read_text()
    assert transcript.startswith("1000-1-0000 ") and transcript.count("\n") == 2
    profiles = json.loads((output / "sources" / "LibriSpeech" / "voices.json").read_text())
    assert len({(profile["voice"], profile["variant"]) for profile in profiles}) == 8
    noise = scan_background_folder(str(output / "sources" / "wham_noise"), "noise")
    sfx = scan_background_folder(str(output / "sources" / "dnr"), "sfx")
    assert sum(len(noise[split]) for split in SPLITS) == 3 and noise["unsplit"] == []
    assert all(len(sfx[split]) == 1 for split in SPLITS)


def test_demo_dataset_is_complete_and_speaker_disjoint(demo):
    output, result = demo
    assert result["num_mixtures"] == {"train": 3, "valid": 1, "test": 1}
    used = {}
    for split in SPLITS:
        with open(output / f"{split}.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == result["num_mixtures"][split]
        for row in rows:
            metadata = json.loads((output / split / "metadata" / f"{row['ID']}.json").read_text())
            used.setdefault(split, set()).update(speaker["speaker"] for speaker in metadata["speakers"])
            assert sf.info(row["mix_wav"]).frames == 16000
    assert used["train"].isdisjoint(used["valid"] | used["test"]) and used["valid"].isdisjoint(used["test"])


def test_rerun_resumes_without_redoing_anything(demo):
    output, _ = demo
    flac = output / "sources" / "LibriSpeech" / "demo" / "1003" / "1" / "1003-1-0001.flac"
    before = flac.stat().st_mtime_ns
    result = prepare_demo(str(output), hours=HOURS, duration=2.0, sample_rate=8000, sizes=SIZES, seed=0,
                          num_workers=1, show_progress=False, simulation_options=FAST)
    assert result["made"] == 0 and flac.stat().st_mtime_ns == before


def test_sources_are_deterministic_and_settings_are_checked(demo, tmp_path):
    output, _ = demo
    folders = build_demo_corpora(str(tmp_path / "sources"), HOURS, sample_rate=8000, sizes=SIZES, seed=0,
                                 num_workers=1, show_progress=False)
    for relative in ("LibriSpeech/demo/1005/1/1005-1-0001.flac", "wham_noise/tr/noise_00000.wav",
                     "dnr/tt/clip_00000/music.wav"):
        assert (tmp_path / "sources" / relative).read_bytes() == (output / "sources" / relative).read_bytes()
    assert folders["sfx"] == folders["music"] == str(tmp_path / "sources" / "dnr")
    with pytest.raises(ValueError, match="made with other settings"):
        build_demo_corpora(str(tmp_path / "sources"), HOURS, sample_rate=16000, sizes=SIZES, show_progress=False)
    with pytest.raises(ValueError, match=r"sizes has unknown keys \['voices'\]"):
        build_demo_corpora(str(tmp_path / "other"), HOURS, sizes={"voices": 3}, show_progress=False)


def test_default_sizes_grow_with_the_hours():
    small, large = demo_sizes(DEMO_HOURS), demo_sizes({"train": 25, "valid": 3, "test": 2})
    assert small["num_voices"] >= 30 and large["num_voices"] > 500
    speech_seconds = large["num_voices"] * large["utterances_per_voice"] * 3.5
    assert speech_seconds * 3 >= 30 * 3600 * 2 * 0.8  # each utterance reused about 3 times at most
    assert large["num_noise_files"] * 15 * 2 >= 30 * 3600 and large["num_clips"] * 30 * 2 >= 30 * 3600
    profiles = voice_profiles(large["num_voices"], seed=0)
    assert len({(p["voice"], p["variant"], p["rate"], p["pitch"]) for p in profiles}) == len(profiles)


def test_small_evaluation_splits_get_several_background_files(tmp_path, monkeypatch):
    planned = []
    monkeypatch.setattr("spmamba_sb.data.demo_corpus._run", lambda tasks, *args: planned.extend(tasks))
    build_demo_corpora(str(tmp_path), {"train": 4, "valid": 0.05, "test": 0.05}, sample_rate=8000,
                       sizes={"num_voices": 2, "num_noise_files": 50, "num_clips": 50}, show_progress=False)
    noise = [Path(task[1][0][1]).parent.name for task in planned if task[1][0][0] == "noise"]
    clips = [Path(task[1][0][1]).parent.parent.name for task in planned if task[1][0][0] == "sfx"]
    assert [noise.count(folder) for folder in ("tr", "cv", "tt")] == [42, 4, 4]
    assert [clips.count(folder) for folder in ("tr", "cv", "tt")] == [42, 4, 4]
