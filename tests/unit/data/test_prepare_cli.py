"""The commands: an end-to-end run on fake corpora, and one-line errors naming the bad input."""

import csv

import pytest

from spmamba_sb.data.prepare_cli import demo_main, echo2mix_main

FAST = ["--option", "room_min=[3, 3, 2.5]", "--option", "room_max=[4, 4, 3]", "--option", "num_rays=300",
        "--rt60", "0.15", "0.3"]


def test_echo2mix_command_builds_the_dataset(fake_corpora, tmp_path):
    arguments = ["--librispeech", str(fake_corpora["librispeech"]), "--wham", str(fake_corpora["wham"]),
                 "--dnr", str(fake_corpora["dnr"]), "--out", str(tmp_path / "out"), "--sample-rate", "8000",
                 "--duration", "2", "--hours-train", str(4 / 3600), "--hours-valid", str(2 / 3600),
                 "--hours-test", str(2 / 3600), "--num-workers", "1", "--no-progress", "--audio-subtype", "PCM_16",
                 "--librispeech-subsets", "train-clean-100", *FAST]
    assert echo2mix_main(arguments) == 0
    with open(tmp_path / "out" / "train.csv", newline="") as handle:
        assert [row["ID"] for row in csv.DictReader(handle)] == ["train_000000", "train_000001"]


@pytest.mark.parametrize("change,message", [
    (["--librispeech", "nowhere/LibriSpeech"], "librispeech folder 'nowhere/LibriSpeech' does not exist"),
    (["--duration", "0.2"], "duration=0.2 is invalid"),
    (["--num-speakers", "5"], "found 8 speakers, but speaker-disjoint splits with num_speakers=5 need at least 15"),
])
def test_bad_input_exits_with_a_message(fake_corpora, tmp_path, capsys, change, message):
    arguments = {"--librispeech": str(fake_corpora["librispeech"] / "train-clean-100"),
                 "--wham": str(fake_corpora["wham"]), "--dnr": str(fake_corpora["dnr"]),
                 "--out": str(tmp_path / "out"), "--no-progress": None}
    arguments.update(dict(zip(change[::2], change[1::2])))
    argv = [item for key, value in arguments.items() for item in ([key] if value is None else [key, value])]
    with pytest.raises(SystemExit) as exit_info:
        echo2mix_main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_argument_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        echo2mix_main(["--librispeech", "a", "--wham", "b", "--out", str(tmp_path)])
    assert "give --dnr (the DnR folder), or both --sfx and --music" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo_main(["--out", str(tmp_path), "--option", "reverb=1"])
    assert "--option 'reverb=1': expected KEY=VALUE" in capsys.readouterr().err


def test_backgrounds_option_and_the_clean_demo_preset(tmp_path, monkeypatch):
    import spmamba_sb.data.prepare_cli as cli

    seen = {}
    monkeypatch.setattr(cli, "prepare_demo", lambda output, **kwargs: seen.update(kwargs["simulation_options"]) or
                        {"made": 0, "num_mixtures": {}, "csv": {}})
    assert demo_main(["--out", str(tmp_path), "--preset", "clean", "--no-progress"]) == 0
    assert seen["backgrounds"] == () and seen["rt60"] == (0.1, 0.3)
    assert demo_main(["--out", str(tmp_path), "--preset", "clean", "--rt60", "0.2", "0.4", "--backgrounds", "noise",
                      "--no-progress"]) == 0
    assert seen["backgrounds"] == ("noise",) and seen["rt60"] == (0.2, 0.4)  # explicit options win
    with pytest.raises(SystemExit):
        demo_main(["--out", str(tmp_path), "--backgrounds", "none", "music"])
