"""How a command ends: Ctrl-C and disk errors are one line and a status, other errors stay tracebacks."""

import errno

import pytest

from spmamba_sb.console import INTERRUPTED, command


def _main_raising(error):
    @command("prog")
    def main():
        raise error

    return main


def test_interrupt_is_one_line_and_status_130(capsys):
    with pytest.raises(SystemExit) as stop:
        _main_raising(KeyboardInterrupt())()
    assert stop.value.code == INTERRUPTED == 130
    assert capsys.readouterr().err.strip() == "prog: interrupted"


@pytest.mark.parametrize("number,reason", [(errno.ENOSPC, "the disk is full"),
                                           (errno.EROFS, "the file system is read-only"),
                                           (errno.EACCES, "permission denied")])
def test_disk_errors_are_one_line_naming_the_file(capsys, number, reason):
    with pytest.raises(SystemExit) as stop:
        _main_raising(OSError(number, "detail", "out/a_s1.wav"))()
    assert stop.value.code == 1
    assert capsys.readouterr().err == f"prog: error: out/a_s1.wav: {reason} (detail)\n"


def test_other_errors_keep_their_traceback():
    with pytest.raises(FileNotFoundError):
        _main_raising(FileNotFoundError(errno.ENOENT, "No such file", "x"))()
    with pytest.raises(ZeroDivisionError):
        _main_raising(ZeroDivisionError())()


def test_return_value_passes_through():
    assert command("prog")(lambda: 3)() == 3
