"""Tracks: no overlap, natural onsets, cut files faded, unreadable files skipped."""

import numpy as np
import pytest

from spmamba_sb.data.audio_io import UnreadableAudioError
from spmamba_sb.data.timeline import NoReadableFilesError, draw_segments, render_segments

LENGTHS = {"a": 700, "b": 1300, "c": 400, "long": 50000}


def _load(path):
    if path == "bad":
        raise UnreadableAudioError("cannot read audio file 'bad'")
    return np.full(LENGTHS[path], 1.0 + sorted(LENGTHS).index(path))


@pytest.mark.parametrize("seed", range(5))
def test_speech_track_never_overlaps_and_keeps_natural_onsets(seed):
    skipped = set()
    segments = draw_segments(np.random.default_rng(seed), ["a", "b", "c", "bad"], 8000, 1000, _load,
                             gap=(0.1, 0.5), max_first_onset=0.3, fade=0.01, random_start=False,
                             fade_every_segment=False, skipped=skipped)
    assert skipped == {"bad"}
    assert 0 <= segments[0]["start"] <= 300
    for previous, following in zip(segments, segments[1:]):
        gap = following["start"] - (previous["start"] + previous["length"])
        assert 100 <= gap <= 500
    assert all(segment["file_start"] == 0 and segment["fade_in"] == 0 for segment in segments)
    assert all(segment["fade_out"] == 0 for segment in segments[:-1])
    last = segments[-1]
    assert last["start"] + last["length"] <= 8000
    assert last["fade_out"] == (10 if last["length"] < LENGTHS[last["file"]] else 0)
    # every file is used once before any is repeated
    files = [segment["file"] for segment in segments]
    assert sorted(files[:3]) == ["a", "b", "c"]


def test_long_background_file_starts_at_a_random_point_with_fades():
    segments = draw_segments(np.random.default_rng(0), ["long"], 1000, 1000, _load, gap=(0.0, 0.0),
                             max_first_onset=0.0, fade=0.02, random_start=True, fade_every_segment=True,
                             skipped=set())
    assert len(segments) == 1
    segment = segments[0]
    assert segment["length"] == 1000 and 0 < segment["file_start"] <= 49000
    assert segment["fade_in"] == segment["fade_out"] == 20


def test_all_unreadable_raises():
    with pytest.raises(NoReadableFilesError, match="none of the 1 candidate files"):
        draw_segments(np.random.default_rng(0), ["bad"], 100, 1000, _load, (0.0, 0.0), 0.0, 0.0, False, False, set())


def test_render_places_and_fades():
    segments = [{"file": "a", "file_start": 0, "start": 10, "length": 100, "fade_in": 0, "fade_out": 20},
                {"file": "c", "file_start": 50, "start": 200, "length": 30, "fade_in": 5, "fade_out": 0}]
    track = render_segments(segments, 300, _load)
    assert track.shape == (300,)
    assert np.all(track[:10] == 0) and np.all(track[10:90] == 1.0) and np.all(track[230:] == 0)
    assert np.all(np.diff(track[90:110]) < 0) and 0 < track[109] < 0.1
    assert np.all(np.diff(track[200:205]) > 0) and np.all(track[205:230] == 3.0)


def test_render_detects_a_changed_file():
    segment = {"file": "c", "file_start": 300, "start": 0, "length": 200, "fade_in": 0, "fade_out": 0}
    with pytest.raises(ValueError, match="was it changed"):
        render_segments([segment], 300, _load)
