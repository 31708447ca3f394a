"""Scanning LibriSpeech / WHAM! / DnR folders, clear errors for bad folders, speaker-disjoint splits."""

import pytest

from spmamba_sb.data.corpora import (BACKGROUND_KINDS, SPLITS, Corpora, partition_speakers, proportional_counts,
                                     scan_background_folder, scan_librispeech)

from .conftest import DEV_SPEAKERS, TRAIN_SPEAKERS


def test_librispeech_scan_lists_every_speaker_of_every_subset(fake_corpora):
    speakers = scan_librispeech(str(fake_corpora["librispeech"]))
    assert sorted(speakers) == sorted(TRAIN_SPEAKERS + DEV_SPEAKERS)
    assert len(speakers[TRAIN_SPEAKERS[0]]) == 4 and len(speakers[DEV_SPEAKERS[0]]) == 3
    assert all(path.endswith(".flac") for files in speakers.values() for path in files)
    # a subset folder, or a folder above LibriSpeech, work too
    assert sorted(scan_librispeech(str(fake_corpora["librispeech"] / "dev-clean"))) == DEV_SPEAKERS
    assert len(scan_librispeech(str(fake_corpora["root"]))) == len(TRAIN_SPEAKERS) + len(DEV_SPEAKERS)


def test_librispeech_subsets_filter(fake_corpora):
    assert sorted(scan_librispeech(str(fake_corpora["librispeech"]), ["dev-clean"])) == DEV_SPEAKERS
    with pytest.raises(ValueError, match=r"no LibriSpeech utterances in subsets \['test-clean'\]"):
        scan_librispeech(str(fake_corpora["librispeech"]), ["test-clean"])


def test_missing_file_and_empty_folders_are_named(tmp_path, fake_corpora):
    with pytest.raises(ValueError, match=r"librispeech folder '.*Librispeech' does not exist; expected the "
                                         r"LibriSpeech folder"):
        scan_librispeech(str(tmp_path / "Librispeech"))
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        scan_librispeech(str(tmp_path / "a_file"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"noise folder '.*empty' is empty; expected the WHAM! noise folder"):
        scan_background_folder(str(tmp_path / "empty"), "noise")
    with pytest.raises(ValueError, match="music is not set"):
        scan_background_folder("", "music")


def test_wrong_corpus_in_the_wrong_argument_is_explained(fake_corpora):
    with pytest.raises(ValueError, match=r"holds no LibriSpeech utterances; found \d+ other audio files "
                                         r"\(for example 'cv/noise_0.wav'\)"):
        scan_librispeech(str(fake_corpora["wham"]))
    with pytest.raises(ValueError, match="looks like a LibriSpeech folder"):
        scan_background_folder(str(fake_corpora["librispeech"]), "noise")
    with pytest.raises(ValueError, match="looks like a DnR folder .* but holds no noise recordings"):
        scan_background_folder(str(fake_corpora["dnr"]), "noise")


def test_dnr_folder_without_the_stem_is_refused(tmp_path):
    clip = tmp_path / "dnr" / "tr" / "7"
    clip.mkdir(parents=True)
    for stem in ("mix", "speech", "music"):
        (clip / f"{stem}.wav").touch()
    assert len(scan_background_folder(str(tmp_path / "dnr"), "music")["train"]) == 1
    with pytest.raises(ValueError, match=r"looks like a DnR folder .* holds no sfx.wav"):
        scan_background_folder(str(tmp_path / "dnr"), "sfx")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "readme.txt").touch()
    with pytest.raises(ValueError, match=r"holds no audio files \(.wav, .flac, .ogg\)"):
        scan_background_folder(str(tmp_path / "texts"), "sfx")
    with pytest.raises(ValueError, match="kind must be one of"):
        scan_background_folder(str(tmp_path / "dnr"), "speech")


def test_background_files_follow_their_split_folders(fake_corpora):
    noise = scan_background_folder(str(fake_corpora["wham"]), "noise")
    assert [len(noise[split]) for split in (*SPLITS, "unsplit")] == [4, 2, 2, 0]
    sfx = scan_background_folder(str(fake_corpora["dnr"]), "sfx")
    assert [len(sfx[split]) for split in SPLITS] == [1, 1, 1]
    assert all(path.endswith("sfx.wav") for files in sfx.values() for path in files)


def test_loose_background_files_are_shared_out_without_overlap(tmp_path):
    for number in range(10):
        (tmp_path / f"effect_{number}.wav").touch()
    grouped = scan_background_folder(str(tmp_path), "sfx")
    assert len(grouped["unsplit"]) == 10
    corpora = Corpora(speakers={str(index): [f"{index}.flac"] for index in range(6)},
                      backgrounds={kind: grouped for kind in BACKGROUND_KINDS})
    sources = corpora.assign_splits({"train": 8, "valid": 1, "test": 1}, num_speakers=2, seed=0)
    parts = [set(sources[split]["sfx"]) for split in SPLITS]
    assert sum(len(part) for part in parts) == 10 and all(parts)
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def test_speaker_partition_is_disjoint_complete_proportional_and_seeded():
    speakers = [str(index) for index in range(251)]
    parts = partition_speakers(speakers, {"train": 57, "valid": 8, "test": 3}, num_speakers=2, seed=0)
    assert [len(parts[split]) for split in SPLITS] == [210, 30, 11]
    assert sorted(sum(parts.values(), []), key=int) == speakers
    assert parts == partition_speakers(list(reversed(speakers)), {"train": 57, "valid": 8, "test": 3}, 2, 0)
    assert parts != partition_speakers(speakers, {"train": 57, "valid": 8, "test": 3}, 2, 1)
    assert partition_speakers(speakers[:4], {"train": 1, "valid": 0, "test": 1}, 2, 0)["valid"] == []


def test_too_few_speakers_is_explained():
    with pytest.raises(ValueError, match="found 5 speakers, but speaker-disjoint splits with num_speakers=2 need "
                                         "at least 6"):
        partition_speakers([str(index) for index in range(5)], {"train": 1, "valid": 1, "test": 1}, 2, 0)


def test_proportional_counts_keep_the_minimum():
    assert proportional_counts(6, [57, 8, 3], 2) == [2, 2, 2]
    assert proportional_counts(7, [1, 0, 1], 1) == [4, 0, 3]
    assert proportional_counts(5, [0, 0, 0], 1) == [0, 0, 0]


def test_corpora_from_folders(fake_corpora):
    corpora = Corpora.from_folders(str(fake_corpora["librispeech"]), str(fake_corpora["wham"]),
                                   str(fake_corpora["dnr"]), str(fake_corpora["dnr"]))
    assert corpora.summary() == {"speakers": 12, "utterances": 38, "noise": 8, "sfx": 3, "music": 3}
    sources = corpora.assign_splits({"train": 1, "valid": 1, "test": 1}, num_speakers=2, seed=3)
    speaker_sets = [set(sources[split]["speakers"]) for split in SPLITS]
    assert speaker_sets[0].isdisjoint(speaker_sets[1]) and speaker_sets[1].isdisjoint(speaker_sets[2])
    assert all(len(speaker_set) >= 2 for speaker_set in speaker_sets)
    assert sources["test"]["music"] == [str(fake_corpora["dnr"] / "tt" / "1001" / "music.wav")]


def test_small_evaluation_splits_still_get_several_speakers():
    speakers = [str(index) for index in range(112)]
    parts = partition_speakers(speakers, {"train": 4, "valid": 0.05, "test": 0.05}, num_speakers=2, seed=0)
    assert [len(parts[split]) for split in SPLITS] == [96, 8, 8]
    parts = partition_speakers(speakers[:36], {"train": 0.2, "valid": 0.05, "test": 0.05}, num_speakers=2, seed=0)
    assert [len(parts[split]) for split in SPLITS] == [24, 6, 6]  # proportional shares already hold 4+
