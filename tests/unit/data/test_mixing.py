"""One mixture: loudness, no self-overlap, sum of parts, rebuild, resampling, unreadable files, no clipping."""

import json
import math

import numpy as np
import pyloudnorm
import pytest

from spmamba_sb.data.corpora import BACKGROUND_KINDS, Corpora
from spmamba_sb.data.mixing import MixtureSimulator

from .conftest import RATE


@pytest.fixture(scope="module")
def sources(fake_corpora):
    corpora = Corpora.from_folders(str(fake_corpora["librispeech"]), str(fake_corpora["wham"]),
                                   str(fake_corpora["dnr"]), str(fake_corpora["dnr"]))
    return corpora.assign_splits({"train": 1, "valid": 0, "test": 0}, num_speakers=2, seed=0)["train"]


@pytest.fixture(scope="module")
def simulated(sources, make_config):
    simulator = MixtureSimulator(make_config())
    return simulator, [simulator.simulate(np.random.default_rng(seed), sources, f"m{seed}") for seed in range(3)]


def _loudness(signal):
    return pyloudnorm.Meter(RATE).integrated_loudness(np.asarray(signal, dtype=np.float64))


def test_signals_have_the_expected_streams_and_shapes(simulated):
    _, results = simulated
    for signals, metadata in results:
        assert sorted(signals) == ["mix", "noise", "s1", "s2"]
        assert all(signal.shape == (1, 2 * RATE) and signal.dtype == np.float32 for signal in signals.values())
        assert len({speaker["speaker"] for speaker in metadata["speakers"]}) == 2


def test_mixture_is_the_sum_of_its_parts(simulated):
    _, results = simulated
    for signals, _ in results:
        parts = signals["s1"].astype(np.float64) + signals["s2"] + signals["noise"]
        assert np.max(np.abs(signals["mix"] - parts)) < 1e-5
        assert np.max(np.abs(signals["s1"])) > 0.01 and np.max(np.abs(signals["noise"])) > 0.001


def test_class_loudness_matches_its_drawn_target(simulated, make_config):
    simulator, results = simulated
    config = make_config()
    for signals, metadata in results:
        rescale_db = 20 * math.log10(metadata["rescale"])
        for index, speaker in enumerate(metadata["speakers"]):
            assert abs(speaker["lufs_target"] - config.speech_lufs) <= config.loudness_spread
            assert abs(_loudness(signals[f"s{index + 1}"][0]) - (speaker["lufs_target"] + rescale_db)) < 0.05
            assert speaker["lufs"] == pytest.approx(speaker["lufs_target"] + rescale_db)
        backgrounds = simulator.rebuild(metadata, include_backgrounds=True)
        for kind in BACKGROUND_KINDS:
            entry = metadata["backgrounds"][kind]
            assert abs(entry["lufs_target"] - config.loudness_centre(kind)) <= config.loudness_spread
            assert abs(_loudness(backgrounds[f"background_{kind}"][0]) - entry["lufs"]) < 0.05


def test_speakers_never_overlap_themselves_and_speak_their_own_utterances(simulated):
    _, results = simulated
    for _, metadata in results:
        for speaker in metadata["speakers"]:
            segments = speaker["segments"]
            assert segments, "every speaker talks"
            for previous, following in zip(segments, segments[1:]):
                assert following["start"] >= previous["start"] + previous["length"]
            for segment in segments:
                assert segment["file"].rsplit("/", 1)[-1].startswith(speaker["speaker"] + "-")
                assert segment["file_start"] == 0 and segment["fade_in"] == 0  # natural onsets
                assert 0 <= segment["start"] and segment["start"] + segment["length"] <= metadata["num_samples"]


def test_rebuild_from_json_gives_identical_signals(simulated):
    simulator, results = simulated
    signals, metadata = results[0]
    rebuilt = simulator.rebuild(json.loads(json.dumps(metadata)))
    assert all(np.array_equal(rebuilt[name], signals[name]) for name in signals)


def test_simulation_is_deterministic(sources, simulated):
    simulator, results = simulated
    signals, metadata = simulator.simulate(np.random.default_rng(1), sources, "m1")
    assert metadata == results[1][1]
    assert all(np.array_equal(signals[name], results[1][0][name]) for name in signals)


def test_other_rates_are_resampled_and_unreadable_files_skipped(fake_corpora, make_config):
    speaker_a, speaker_b = "100", "101"
    # 4 s mixtures need several utterances and noise files, so every candidate file gets drawn
    sources = {"speakers": {speaker_a: [str(fake_corpora["other_rate"])],
                            speaker_b: [str(fake_corpora["corrupt"]),
                                        str(fake_corpora["corrupt"].parent / f"{speaker_b}-77-0000.flac")]},
               "noise": [str(fake_corpora["corrupt_noise"]), str(fake_corpora["wham"] / "tr" / "stereo_16k.wav")],
               "sfx": [str(fake_corpora["dnr"] / "tt" / "1001" / "sfx.wav")],
               "music": [str(fake_corpora["dnr"] / "tt" / "1001" / "music.wav")]}
    signals, metadata = MixtureSimulator(make_config(duration=4.0)).simulate(np.random.default_rng(0), sources)
    assert set(metadata["skipped_files"]) == {str(fake_corpora["corrupt"]), str(fake_corpora["corrupt_noise"])}
    other_rate = next(speaker for speaker in metadata["speakers"] if speaker["speaker"] == speaker_a)
    first = other_rate["segments"][0]
    # the 16 kHz file of 1 s is 8000 samples at the mixture's 8 kHz
    assert first["length"] == min(RATE, metadata["num_samples"] - first["start"])
    assert np.isfinite(signals["mix"]).all()


def test_loud_targets_are_rescaled_never_clipped(sources, make_config):
    config = make_config(speech_lufs=-4.0, max_peak=0.9)
    signals, metadata = MixtureSimulator(config).simulate(np.random.default_rng(0), sources)
    assert metadata["rescale"] < 1
    for signal in signals.values():
        assert np.max(np.abs(signal)) <= 0.9 + 1e-6
    assert abs(_loudness(signals["s1"][0]) - metadata["speakers"][0]["lufs"]) < 0.05


def test_multichannel_output(sources, make_config):
    config = make_config(num_channels=3)
    simulator = MixtureSimulator(config)
    signals, metadata = simulator.simulate(np.random.default_rng(0), sources)
    assert all(signal.shape == (3, 2 * RATE) for signal in signals.values())
    assert not np.array_equal(signals["s1"][0], signals["s1"][1])
    assert np.max(np.abs(signals["mix"] - (signals["s1"].astype(np.float64) + signals["s2"] + signals["noise"]))) < 1e-5
    with pytest.raises(ValueError, match="metadata has num_channels=3"):
        MixtureSimulator(make_config()).rebuild(metadata)


def test_too_few_speakers(sources, make_config):
    few = dict(sources, speakers=dict(list(sources["speakers"].items())[:1]))
    with pytest.raises(ValueError, match="num_speakers=2 but only 1 speakers"):
        MixtureSimulator(make_config()).simulate(np.random.default_rng(0), few)


def test_clean_mixtures_hold_only_the_speakers(sources, make_config):
    simulator = MixtureSimulator(make_config(backgrounds=()))
    signals, metadata = simulator.simulate(np.random.default_rng(0), sources, "clean")
    assert metadata["backgrounds"] == {} and len(metadata["room"]["sources"]) == 2
    assert not np.any(signals["noise"])
    assert np.max(np.abs(signals["mix"] - signals["s1"] - signals["s2"])) < 1e-6
    rebuilt = simulator.rebuild(json.loads(json.dumps(metadata)))
    assert all(np.allclose(rebuilt[name], signals[name], atol=1e-6) for name in signals)
