"""The commands never lose a user's file: spmamba-separate, spmamba-evaluate and spmamba-export
replace an existing output only with --overwrite, never write over one of their inputs, check
--out before the long work, write each set of outputs all or none, and end a full disk, a
read-only folder or Ctrl-C with one line.

Each data-loss case reads the user's files before the command and compares their bytes after it.
A full disk is simulated by a write raising ``ENOSPC`` and, where ``/dev/full`` exists, by
libsndfile itself writing to it; a read-only folder by the probe raising ``EROFS`` (as root,
``chmod`` does not stop writes, so the ``chmod`` test runs only for other users).
"""

import errno
import os
import tempfile

import numpy as np
import pytest
import soundfile as sf

from spmamba_sb import cli, model_folder, scoring
from spmamba_sb.data.audio_io import write_audio
from spmamba_sb.outputs import PARTIAL_SUFFIX
from tests.conftest import exit_status
from tests.unit.test_export import write_experiment
from tests.unit.test_inference import RATE, write_tiny_model
from tests.unit.test_scoring import write_scoring_set

SEPARATE, EVALUATE, EXPORT = "spmamba-separate", "spmamba-evaluate", "spmamba-export"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("model"))


def _wav(path, frames=RATE // 4, seed=0):
    sf.write(str(path), 0.1 * np.random.default_rng(seed).standard_normal(frames), RATE, subtype="FLOAT")
    return path


def _snapshot(*folders):
    """Every file under ``folders``: relative path -> bytes."""
    files = {}
    for folder in folders:
        for root, _, names in os.walk(folder):
            for name in names:
                path = os.path.join(root, name)
                files[os.path.relpath(path, folder.parent)] = open(path, "rb").read()
    return files


def _lines(stderr):
    """The lines of ``stderr`` (Ctrl-C's line comes after a newline), checking it holds no traceback."""
    assert "Traceback" not in stderr
    return stderr.strip("\n").splitlines()


def _must_not_run(*args, **kwargs):
    raise AssertionError("the work started although the command had to stop first")


def _failing_write(write, target, error):
    """``write`` (a function whose first argument is the path), except that for the path named
    ``target`` it writes a few bytes there, then raises ``error`` as an interrupted write would."""
    def fail_on_target(path, *args, **kwargs):
        if os.path.basename(path) == target:
            with open(path, "wb") as handle:
                handle.write(b"half")
            raise error(path) if callable(error) else error
        return write(path, *args, **kwargs)
    return fail_on_target


def _disk_full(path):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))


def _read_only_probe(monkeypatch, folder):
    """Make the check that ``folder`` can be written fail as on a read-only file system."""
    temporary_file = tempfile.TemporaryFile

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and os.path.samefile(dir, folder):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(dir, "tmpprobe"))
        return temporary_file(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)


# spmamba-separate

@pytest.mark.parametrize("spelling", ["same path", "other spelling", "hard link"])
def test_separate_never_writes_over_an_input(model_dir, tmp_path, capsys, monkeypatch, spelling):
    """`spmamba-separate foo.wav foo_s1.wav --out . --overwrite` used to replace foo_s1.wav with
    foo.wav's first output before reading it."""
    mix, other = _wav(tmp_path / "foo.wav"), _wav(tmp_path / "foo_s1.wav", seed=1)
    out, second = tmp_path, other
    if spelling == "other spelling":
        (tmp_path / "sub").mkdir()
        second = tmp_path / "sub" / ".." / "foo_s1.wav"
    elif spelling == "hard link":
        out = tmp_path / "out"
        out.mkdir()
        os.link(other, out / "foo_s1.wav")
    before = _snapshot(tmp_path)
    monkeypatch.setattr(cli.SPMambaSeparation, "separate_file", _must_not_run)
    status = exit_status(cli.separate_main, mix, second, "--model", model_dir, "--out", out, "--overwrite")
    assert status == 1
    assert _lines(capsys.readouterr().err) == [
        f"{SEPARATE}: error: {out / 'foo_s1.wav'} is an input of this command: it is never replaced "
        "(choose another --out)"]
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("full_disk", ["write raises ENOSPC", "libsndfile writes to /dev/full"])
def test_full_disk_loses_one_input_and_the_others_go_on(model_dir, tmp_path, capsys, monkeypatch, full_disk):
    """a.wav's second output fails: neither of its outputs is left (its old first output, which
    --overwrite would have replaced, is kept as it was), no partial file, and b.wav is separated."""
    first, second, out = _wav(tmp_path / "a.wav"), _wav(tmp_path / "b.wav", seed=1), tmp_path / "out"
    out.mkdir()
    (out / "a_s1.wav").write_bytes(b"an earlier result")
    if full_disk == "write raises ENOSPC":
        monkeypatch.setattr(cli, "write_audio", _failing_write(write_audio, f"a_s2.wav{PARTIAL_SUFFIX}", _disk_full))
    elif os.path.exists("/dev/full"):  # libsndfile's own error, turned into OSError(ENOSPC)
        os.symlink("/dev/full", out / f"a_s2.wav{PARTIAL_SUFFIX}")
    else:
        pytest.skip("no /dev/full on this system")
    status = exit_status(cli.separate_main, first, second, "--model", model_dir, "--out", out, "--overwrite",
                         "--quiet")
    captured = capsys.readouterr()
    assert status == 1
    assert _lines(captured.err) == [
        f"{SEPARATE}: error: {first}: {out / 'a_s2.wav'}: the disk is full (No space left on device)"]
    assert captured.out.startswith(f"{second}: ")
    assert sorted(os.listdir(out)) == ["a_s1.wav", "b_s1.wav", "b_s2.wav"]
    assert (out / "a_s1.wav").read_bytes() == b"an earlier result"


def test_read_only_out_stops_before_separating(model_dir, tmp_path, capsys, monkeypatch):
    mix, out = _wav(tmp_path / "mix.wav"), tmp_path / "out"
    out.mkdir()
    _read_only_probe(monkeypatch, out)
    monkeypatch.setattr(cli.SPMambaSeparation, "separate_file", _must_not_run)
    assert exit_status(cli.separate_main, mix, "--model", model_dir, "--out", out) == 1
    assert _lines(capsys.readouterr().err) == [
        f"{SEPARATE}: error: --out {out}: cannot write there: the file system is read-only (Read-only file system)"]
    assert os.listdir(out) == []


def test_folder_without_write_permission(model_dir, tmp_path, capsys):
    mix, out = _wav(tmp_path / "mix.wav"), tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("this user writes in folders without write permission (root)")
        assert exit_status(cli.separate_main, mix, "--model", model_dir, "--out", out) == 1
        assert _lines(capsys.readouterr().err) == [
            f"{SEPARATE}: error: --out {out}: cannot write there: permission denied (Permission denied)"]
        assert os.listdir(out) == []
    finally:
        out.chmod(0o755)


@pytest.mark.parametrize("where", ["separating", "writing the second source"])
def test_ctrl_c_exits_130_with_one_line_and_no_partial_files(model_dir, tmp_path, capsys, monkeypatch, where):
    first, second, out = _wav(tmp_path / "a.wav"), _wav(tmp_path / "b.wav", seed=1), tmp_path / "out"
    if where == "separating":
        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt
        monkeypatch.setattr(cli.SPMambaSeparation, "separate_file", interrupted)
    else:
        monkeypatch.setattr(cli, "write_audio",
                            _failing_write(write_audio, f"a_s2.wav{PARTIAL_SUFFIX}", KeyboardInterrupt()))
    status = exit_status(cli.separate_main, first, second, "--model", model_dir, "--out", out, "--quiet")
    captured = capsys.readouterr()
    assert status == 130 and captured.out == ""
    assert _lines(captured.err) == [f"{SEPARATE}: interrupted"]
    assert os.listdir(out) == []


# spmamba-evaluate

@pytest.fixture
def scoring_data(tmp_path):
    write_scoring_set(tmp_path / "data")
    return tmp_path / "data"


def _evaluate(data, model, out, *options):
    return exit_status(cli.evaluate_main, data, "--model", model, "--out", out, "--quiet", *options)


def test_evaluate_keeps_a_report_without_overwrite(model_dir, scoring_data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert _evaluate(scoring_data, model_dir, out) == 0
    before = _snapshot(out)
    assert sorted(before) == [f"out/{name}" for name in sorted(scoring.REPORT_FILES)]
    with monkeypatch.context() as patch:
        patch.setattr(cli, "score_utterance", _must_not_run)
        assert _evaluate(scoring_data, model_dir, out) == 1
    assert _lines(capsys.readouterr().err) == [
        f"{EVALUATE}: error: {out / 'scores.csv'} exists already (use --overwrite to replace it)"]
    assert _snapshot(out) == before
    (out / "scores.csv").write_text("an earlier report")
    assert _evaluate(scoring_data, model_dir, out, "--overwrite") == 0
    assert (out / "scores.csv").read_text().startswith("ID,si-snr,")


def test_evaluate_never_writes_over_its_data(model_dir, scoring_data, tmp_path, capsys, monkeypatch):
    """`spmamba-evaluate DIR/scores.csv --out DIR` used to write over its own input."""
    os.replace(scoring_data / "set.csv", scoring_data / "scores.csv")
    before = _snapshot(scoring_data)
    monkeypatch.setattr(cli, "score_utterance", _must_not_run)
    status = _evaluate(scoring_data / "scores.csv", model_dir, scoring_data, "--overwrite", "--data-root",
                       scoring_data)
    assert status == 1
    assert _lines(capsys.readouterr().err) == [
        f"{EVALUATE}: error: {scoring_data / 'scores.csv'} is an input of this command: it is never replaced "
        "(choose another --out)"]
    assert _snapshot(scoring_data) == before


def test_evaluate_checks_out_before_scoring(model_dir, scoring_data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    _read_only_probe(monkeypatch, out)
    monkeypatch.setattr(cli, "score_utterance", _must_not_run)
    assert _evaluate(scoring_data, model_dir, out) == 1
    assert _lines(capsys.readouterr().err) == [
        f"{EVALUATE}: error: --out {out}: cannot write there: the file system is read-only (Read-only file system)"]
    assert os.listdir(out) == []


@pytest.mark.parametrize("failure,status,line", [
    (_disk_full, 1, "{prog}: error: {out}/si_snri.png: the disk is full (No space left on device)"),
    (KeyboardInterrupt(), 130, "{prog}: interrupted"),
])
def test_report_is_written_all_or_none(model_dir, scoring_data, tmp_path, capsys, monkeypatch, failure, status, line):
    """A report that fails on its last file leaves the earlier report as it was, and no partial file."""
    out = tmp_path / "out"
    out.mkdir()
    for name in scoring.REPORT_FILES:
        (out / name).write_text(f"earlier {name}")
    before = _snapshot(out)
    monkeypatch.setattr(scoring, "write_file",
                        _failing_write(scoring.write_file, f"si_snri.png{PARTIAL_SUFFIX}", failure))
    assert _evaluate(scoring_data, model_dir, out, "--overwrite") == status
    captured = capsys.readouterr()
    assert captured.out == ""
    assert _lines(captured.err) == [line.format(prog=EVALUATE, out=out)]
    assert _snapshot(out) == before


def test_evaluate_ctrl_c_while_scoring(model_dir, scoring_data, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "score_utterance", interrupted)
    assert _evaluate(scoring_data, model_dir, tmp_path / "out") == 130
    assert _lines(capsys.readouterr().err) == [f"{EVALUATE}: interrupted"]
    assert os.listdir(tmp_path / "out") == []


# spmamba-export

def _export(*argv):
    return exit_status(cli.export_main, *argv)


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_export_never_writes_over_the_experiment(tmp_path, capsys, overwrite):
    """`spmamba-export EXP --out EXP` used to replace the training hyperparams.yaml with the model's."""
    folder, _ = write_experiment(tmp_path / "experiment")
    before = _snapshot(folder)
    assert _export(folder, "--out", folder, *overwrite) == 1
    assert _lines(capsys.readouterr().err) == [
        f"{EXPORT}: error: {folder / 'hyperparams.yaml'} is an input of this command: it is never replaced"]
    assert _snapshot(folder) == before
    assert _export(folder, "--out", tmp_path / "model") == 0  # the experiment still exports


def test_export_never_writes_over_the_checkpoint(tmp_path, capsys):
    folder, _ = write_experiment(tmp_path / "experiment")
    [checkpoint] = [path for path in (folder / "save").iterdir() if path.name.endswith("better")]
    before = _snapshot(folder)
    assert _export(folder, "--out", checkpoint, "--overwrite") == 1
    assert _lines(capsys.readouterr().err) == [
        f"{EXPORT}: error: {checkpoint / 'encoder.ckpt'} is an input of this command: it is never replaced"]
    assert _snapshot(folder) == before


def test_export_never_writes_over_the_reference_checkpoint(tmp_path, capsys):
    reference = tmp_path / "model" / "masknet.ckpt"
    reference.parent.mkdir()
    reference.write_bytes(b"a checkpoint of the reference implementation")
    assert _export("--reference", reference, "--out", reference.parent, "--overwrite") == 1
    assert _lines(capsys.readouterr().err) == [
        f"{EXPORT}: error: {reference} is an input of this command: it is never replaced"]
    assert os.listdir(reference.parent) == ["masknet.ckpt"]
    assert reference.read_bytes() == b"a checkpoint of the reference implementation"


def test_export_keeps_a_model_folder_without_overwrite(tmp_path, capsys):
    folder, _ = write_experiment(tmp_path / "experiment")
    model = write_tiny_model(tmp_path / "model")
    before = _snapshot(model)
    assert _export(folder, "--out", model) == 1
    assert _lines(capsys.readouterr().err) == [
        f"{EXPORT}: error: {model / 'hyperparams.yaml'} exists already (use --overwrite to replace it)"]
    assert _snapshot(model) == before
    assert _export(folder, "--out", model, "--overwrite") == 0
    assert (model / "hyperparams.yaml").read_bytes() != before["model/hyperparams.yaml"]


@pytest.mark.parametrize("failure,status,line", [
    (_disk_full, 1, "{prog}: error: {out}/masknet.ckpt: the disk is full (No space left on device)"),
    (KeyboardInterrupt(), 130, "{prog}: interrupted"),
])
def test_model_folder_is_written_all_or_none(tmp_path, capsys, monkeypatch, failure, status, line):
    folder, _ = write_experiment(tmp_path / "experiment")
    model = write_tiny_model(tmp_path / "model")
    before = _snapshot(model)
    monkeypatch.setattr(model_folder, "write_file",
                        _failing_write(model_folder.write_file, f"masknet.ckpt{PARTIAL_SUFFIX}", failure))
    assert _export(folder, "--out", model, "--overwrite") == status
    assert _lines(capsys.readouterr().err) == [line.format(prog=EXPORT, out=model)]
    assert _snapshot(model) == before
