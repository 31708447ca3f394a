"""Writing files all or none, and checking outputs against inputs before any work."""

import errno
import os

import pytest

from spmamba_sb.outputs import OutputExistsError, atomic_outputs, check_outputs, write_file


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_set_is_written_all_or_none(tmp_path, failure):
    (tmp_path / "a.txt").write_text("earlier a")
    with pytest.raises(type(failure)):
        with atomic_outputs([tmp_path / "a.txt", tmp_path / "b.txt"]) as partials:
            write_file(partials[0], "new a")
            write_file(partials[1], "half of b")
            raise failure
    assert os.listdir(tmp_path) == ["a.txt"] and (tmp_path / "a.txt").read_text() == "earlier a"


def test_an_error_names_the_destination_not_the_temporary_file(tmp_path):
    with pytest.raises(OSError) as raised:
        with atomic_outputs([tmp_path / "a.txt"]) as [partial]:
            raise OSError(errno.ENOSPC, "No space left on device", str(partial))
    assert raised.value.filename == str(tmp_path / "a.txt")


def test_a_failed_rename_removes_the_set(tmp_path):
    (tmp_path / "b.txt").mkdir()  # a folder cannot be replaced by a file
    (tmp_path / "b.txt" / "keep").write_text("the user's")
    with pytest.raises(IsADirectoryError):
        with atomic_outputs([tmp_path / "a.txt", tmp_path / "b.txt"]) as partials:
            for partial in partials:
                write_file(partial, "new")
    assert os.listdir(tmp_path) == ["b.txt"] and (tmp_path / "b.txt" / "keep").read_text() == "the user's"


def test_check_outputs(tmp_path):
    source, output = tmp_path / "in.wav", tmp_path / "out.wav"
    source.write_bytes(b"input")
    check_outputs([output], [source])  # nothing there yet
    output.write_bytes(b"an earlier output")
    with pytest.raises(OutputExistsError, match="out.wav exists already"):
        check_outputs([output], [source])
    check_outputs([output], [source], overwrite=True)
    output.unlink()
    os.link(source, output)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="out.wav is an input of this command"):
            check_outputs([output], [source], overwrite=overwrite)
    output.unlink()
    os.symlink(tmp_path / "nowhere", output)  # a dangling link is no input
    check_outputs([output], [source], overwrite=True)
