"""A checkpoint runs no code: files are read with weights_only=True, and a file that is not a
checkpoint is one line naming it, from the library and from the commands."""

import os
import pickle

import pytest
import torch

from spmamba_sb import cli
from spmamba_sb.models.reference_weights import read_reference_checkpoint
from spmamba_sb.tensor_files import TensorFileError, load_tensor_file
from tests.conftest import exit_status


class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _empty(path, marker):
    path.write_bytes(b"")


def _text(path, marker):
    path.write_text("this is not a checkpoint, only some text\n" * 3)


def _torch_pickle(path, marker):
    torch.save({"state_dict": {"deconv.bias": torch.zeros(2)}, "extra": Payload(marker)}, path)


def _legacy_torch_pickle(path, marker):
    torch.save(Payload(marker), path, _use_new_zipfile_serialization=False)


def _plain_pickle(path, marker):
    with open(path, "wb") as handle:
        pickle.dump(Payload(marker), handle)


def _truncated(path, marker):
    torch.save({"weight": torch.zeros(100)}, path)
    path.write_bytes(path.read_bytes()[:200])


# name -> (writer, the problem after "<path>: ")
BAD_FILES = {
    "empty.ckpt": (_empty, "empty file"),
    "notackpt.ckpt": (_text, "not a PyTorch checkpoint (not a file written by torch.save)"),
    "planted.ckpt": (_torch_pickle, "not a checkpoint of tensors and plain values (refused to unpickle posix.system)"),
    "legacy.ckpt": (_legacy_torch_pickle,
                    "not a checkpoint of tensors and plain values (refused to unpickle posix.system)"),
    "plain.pkl": (_plain_pickle, "not a PyTorch checkpoint (not a file written by torch.save)"),
    "truncated.ckpt": (_truncated, "not a PyTorch checkpoint (damaged: PytorchStreamReader failed reading zip"),
}


def _bad_file(tmp_path, name):
    """The file ``name`` of :data:`BAD_FILES`, its expected message and the marker its payload would create."""
    write, problem = BAD_FILES[name]
    path, marker = tmp_path / name, tmp_path / "marker"
    write(path, marker)
    return path, f"{path}: {problem}", marker


def test_payload_runs_when_unpickled_plainly(tmp_path):
    """The planted files are live: loading them the unsafe way creates the marker."""
    for name in ("planted.ckpt", "legacy.ckpt"):
        path, _, marker = _bad_file(tmp_path, name)
        torch.load(path, weights_only=False)
        assert marker.exists()
        marker.unlink()


def test_tensors_and_plain_values_load(tmp_path):
    state = {"weight": torch.arange(3.0), "step": 7, "name": "x", "shape": (2, 3), "none": None}
    torch.save(state, tmp_path / "good.ckpt")
    loaded = load_tensor_file(str(tmp_path / "good.ckpt"))
    assert loaded.keys() == state.keys() and torch.equal(loaded["weight"], state["weight"])
    assert [loaded[key] for key in ("step", "name", "shape", "none")] == [7, "x", (2, 3), None]


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_are_one_error_naming_them(tmp_path, name):
    path, message, marker = _bad_file(tmp_path, name)
    with pytest.raises(TensorFileError) as refused:
        load_tensor_file(str(path))
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
    with pytest.raises(TensorFileError, match="^" + str(path)):
        read_reference_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_separate_with_a_bad_model_file_exits_1_with_one_line(tmp_path, capsys, name):
    path, message, marker = _bad_file(tmp_path, name)
    status = exit_status(cli.separate_main, tmp_path / "x.wav", "--model", path, "--out", tmp_path / "out")
    out, err = capsys.readouterr()
    assert status == 1 and out == "" and "Traceback" not in err
    [line] = err.splitlines()
    assert line.startswith(f"spmamba-separate: error: {message}")
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_export_of_a_bad_reference_exits_1_with_one_line(tmp_path, capsys, name):
    path, message, marker = _bad_file(tmp_path, name)
    status = exit_status(cli.export_main, "--reference", path, "--out", tmp_path / "model")
    out, err = capsys.readouterr()
    assert status == 1 and out == "" and "Traceback" not in err
    [line] = err.splitlines()
    assert line.startswith(f"spmamba-export: error: {message}")
    assert not marker.exists() and not (tmp_path / "model").exists()
