"""The recorded-speech test set: recordings arranged as LibriSpeech speakers, then clean demo mixtures of them."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from spmamba_sb.data.prepare_cli import real_main
from spmamba_sb.data.real_speech import SOURCES_FILE, prepare_real_speech, scan_recordings, trim_silence

from .conftest import voiced

RECORDED_RATE = 16000
SPEAKERS = ["anna", "bob", "carl", "dora"]
#: Small rooms, few rays, 2 s mixtures: a set of 3 mixtures takes about a second.
FAST = {"rt60": (0.1, 0.3), "room_min": (3.0, 3.0, 2.5), "room_max": (4.0, 4.0, 3.0), "num_rays": 300,
        "utterance_gap": (0.1, 0.5)}


def _recordings(folder, speakers=SPEAKERS, seed=0):
    """Two 1.2 s "utterances" a speaker at 16 kHz, each between 0.3 s of silence, one in a subfolder."""
    rng = np.random.default_rng(seed)
    silence = np.zeros(int(0.3 * RECORDED_RATE))
    for speaker in speakers:
        (folder / speaker / "session").mkdir(parents=True)
        for number, path in enumerate((folder / speaker / "a.wav", folder / speaker / "session" / "b.flac")):
            speech = np.concatenate([silence, voiced(rng, 1.2, RECORDED_RATE), silence])
            sf.write(path, speech, RECORDED_RATE, subtype="PCM_16")
    return folder


def _build(output, source, **overrides):
    arguments = dict(layout="speaker-folders", num_mixtures=3, duration=2.0, sample_rate=8000, seed=0,
                     num_workers=1, show_progress=False, simulation_options=FAST)
    arguments.update(overrides)
    return prepare_real_speech(str(output), str(source), **arguments)


@pytest.fixture(scope="module")
def real_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    source = _recordings(root / "recordings")
    return root, source, _build(root / "set", source)


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_folder_holds_a_test_split_of_librispeech_speakers(real_set):
    root, _, result = real_set
    output = root / "set"
    assert result["num_mixtures"] == {"train": 0, "valid": 0, "test": 3}
    assert result["sources"]["speakers"] == 4 and result["sources"]["utterances"] == 8
    assert _rows(output / "train.csv") == [] and _rows(output / "valid.csv") == []
    rows = _rows(output / "test.csv")
    assert [row["ID"] for row in rows] == ["test_000000", "test_000001", "test_000002"]
    assert all(sf.info(row["mix_wav"]).frames == 16000 and sf.info(row["mix_wav"]).samplerate == 8000 for row in rows)
    utterance = output / "sources" / "LibriSpeech" / "real" / "1" / "1" / "1-1-0001.flac"
    assert sf.info(str(utterance)).samplerate == 8000
    assert 1.2 <= sf.info(str(utterance)).duration < 1.5  # 1.8 s recorded; the silence is trimmed to 0.1 s a side
    settings = json.loads((output / "sources" / SOURCES_FILE).read_text())
    assert settings["speakers"]["1"]["name"] == "anna" and settings["speakers"]["1"]["recordings"][1].endswith("b.flac")
    config = json.loads((output / "echo2mix_config.json").read_text())
    assert config["simulation"]["backgrounds"] == [] and config["speakers"]["test"] == ["1", "2", "3", "4"]


def test_a_mixture_is_the_sum_of_two_different_speakers(real_set):
    root, _, _ = real_set
    for row in _rows(root / "set" / "test.csv"):
        mix, first, second, noise = (sf.read(row[f"{name}_wav"])[0] for name in ("mix", "s1", "s2", "noise"))
        np.testing.assert_allclose(mix, first + second, atol=1e-6)
        assert not noise.any() and np.abs(first).max() > 0.01 and np.abs(second).max() > 0.01
        assert row["s1_spk"] != row["s2_spk"] and {row["s1_spk"], row["s2_spk"]} <= {"1", "2", "3", "4"}


def test_the_set_is_a_function_of_the_seed_and_a_rerun_resumes(real_set, tmp_path):
    root, source, _ = real_set
    again = _build(tmp_path / "again", source)
    assert again["made"] == 3
    for name in ("mix", "s1", "s2"):
        np.testing.assert_array_equal(sf.read(tmp_path / "again" / "test" / name / "test_000001.wav")[0],
                                      sf.read(root / "set" / "test" / name / "test_000001.wav")[0])
    assert _build(tmp_path / "again", source)["made"] == 0
    with pytest.raises(ValueError, match="made with other settings"):
        _build(tmp_path / "again", source, seed=1)


def test_the_noisy_set_mixes_the_demos_backgrounds_with_the_recorded_voices(real_set, tmp_path):
    root, source, _ = real_set
    result = _build(tmp_path / "noisy", source, simulation_options={**FAST, "backgrounds": ("noise", "sfx", "music")})
    assert result["num_mixtures"] == {"train": 0, "valid": 0, "test": 3}
    config = json.loads((tmp_path / "noisy" / "echo2mix_config.json").read_text())
    assert config["simulation"]["backgrounds"] == ["noise", "sfx", "music"]
    assert config["speakers"]["test"] == ["1", "2", "3", "4"]
    backgrounds = tmp_path / "noisy" / "sources" / "backgrounds"
    assert sorted(path.name for path in backgrounds.iterdir()) == ["dnr", "wham_noise"]
    for row in _rows(tmp_path / "noisy" / "test.csv"):
        mix, first, second, noise = (sf.read(row[f"{name}_wav"])[0] for name in ("mix", "s1", "s2", "noise"))
        np.testing.assert_allclose(mix, first + second + noise, atol=1e-6)
        assert np.abs(noise).max() > 0.001 and {row["s1_spk"], row["s2_spk"]} <= {"1", "2", "3", "4"}


def test_librispeech_layout_keeps_the_speaker_ids(tmp_path):
    for speaker in ("19", "103"):
        sf.write(tmp_path / f"{speaker}-198-0000.flac", np.ones(100) * 0.1, RECORDED_RATE)
    assert sorted(scan_recordings(str(tmp_path), "librispeech")) == ["103", "19"]


def test_trimming_keeps_speech_and_a_margin():
    speech = np.concatenate([np.full(800, 1e-5), np.ones(1600), np.zeros(8000)])
    assert trim_silence(speech, 8000).shape == (800 + 1600 + 800,)


@pytest.mark.parametrize("case,message", [
    ("missing", "source folder '{source}' does not exist"),
    ("empty", "source folder '{source}' is empty"),
    ("one speaker", "holds 1 speaker(s) (anna); mixtures of 2 speakers need at least 2"),
    ("unreadable", "source recording '{source}/bob/broken.wav' cannot read audio"),
    ("silent", "source recording '{source}/bob/quiet.wav' holds only silence"),
    ("foreign output", "output folder '{output}' is not empty and holds no recorded-speech set"),
])
def test_bad_input_gives_one_clear_error(tmp_path, case, message):
    source, output = tmp_path / "recordings", tmp_path / "set"
    if case != "missing":
        source.mkdir()
    if case in ("one speaker", "unreadable", "silent", "foreign output"):
        _recordings(source, SPEAKERS[:1] if case == "one speaker" else SPEAKERS[:2])
    if case == "unreadable":
        (source / "bob" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    if case == "silent":
        sf.write(source / "bob" / "quiet.wav", np.zeros(800), RECORDED_RATE)
    if case == "foreign output":
        output.mkdir()
        (output / "notes.txt").write_text("mine\n")
    with pytest.raises(ValueError) as error:
        _build(output, source)
    assert message.format(source=source.resolve() if case in ("unreadable", "silent") else source,
                          output=output) in str(error.value)


def test_the_command_builds_the_set_and_names_bad_input(tmp_path, capsys):
    source = _recordings(tmp_path / "recordings", SPEAKERS[:2])
    arguments = ["--source", str(source), "--layout", "speaker-folders", "--out", str(tmp_path / "set"),
                 "--num-mixtures", "1", "--duration", "2", "--sample-rate", "8000", "--num-workers", "1",
                 "--no-progress"]
    assert real_main(arguments) == 0
    config = json.loads((tmp_path / "set" / "echo2mix_config.json").read_text())["simulation"]
    assert config["rt60"] == [0.1, 0.3] and config["backgrounds"] == [] and config["max_first_onset"] == 0.5
    noisy = [*arguments[:5], str(tmp_path / "noisy"), *arguments[6:], "--preset", "noisy"]
    assert real_main(noisy) == 0
    config = json.loads((tmp_path / "noisy" / "echo2mix_config.json").read_text())["simulation"]
    assert config["backgrounds"] == ["noise", "sfx", "music"] and config["rt60"] == [0.2, 0.8]
    with pytest.raises(SystemExit) as exit_info:
        real_main(["--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "other"), "--no-progress"])
    assert exit_info.value.code == 2
    assert f"source folder '{tmp_path / 'nowhere'}' does not exist" in capsys.readouterr().err
