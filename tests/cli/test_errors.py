"""Every mistake a user can make on the command line ends with one clear line on stderr naming the
problem, a non-zero exit status and no traceback (unless --debug)."""

import gzip
import sys

import pytest

from convlab import backend, cli

from .conftest import run_cli

LENET = ["train", "--model", "lenet5", "--dataset", "mnist"]
TRAIN = ["train", "--model", "lenet5", "--dataset", "mnist", "--device", "cpu", "--quiet", "--epochs", "1"]


def error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.fixture
def corrupt_root(tiny_root, tmp_path):
    """A copy of the tiny data root whose training images file is cut short."""
    folder = tmp_path / "corrupt" / "mnist"
    folder.mkdir(parents=True)
    for f in (tiny_root / "mnist").iterdir():
        raw = f.read_bytes()
        if f.name.startswith("train-images"):
            raw = gzip.compress(gzip.decompress(raw)[:5000])
        (folder / f.name).write_bytes(raw)
    return folder.parent


@pytest.mark.parametrize("argv, message", [
    ([*LENET, "--epochs", "abc"],
     "argument --epochs: expected a positive integer, got 'abc'"),
    ([*LENET, "--epochs", "0"],
     "argument --epochs: expected a positive integer, got '0'"),
    ([*LENET, "--lr", "nan"], "argument --lr: expected a finite number"),
    ([*LENET, "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ([*LENET, "--device", "tpu"], "argument --device: invalid choice"),
    (["train", "--model", "nope", "--dataset", "mnist"], "unknown model 'nope'"),
    (["train", "--model", "lenet5", "--dataset", "imagenet"], "unknown data set 'imagenet'"),
    (["train", "--preset", "cifar10-slow"], "unknown preset 'cifar10-slow'"),
    (["train", "--dataset", "mnist"], "a run needs a model and a data set"),
    ([*LENET, "--optimizer", "rmsprop"], "optimizer must be one of"),
    ([*LENET, "--augment", "crop+warp"], "unknown augmentation 'warp'"),
    ([*LENET, "--model-option", "activation"], "expected KEY=VALUE"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["eval"], "the following arguments are required: --checkpoint"),
    (["search", "--model", "lenet5", "--dataset", "mnist"], "give at least one list to search over"),
    (["search", "--model", "lenet5", "--dataset", "mnist", "--lr", "0.1,0.2", "--mode", "random"],
     "--mode random needs --trials N"),
])
def test_bad_arguments_give_one_line_and_exit_status_2(argv, message, capsys):
    assert cli.main(argv) == 2
    line = error_line(capsys)
    assert line.startswith("convlab")
    assert message in line


def test_missing_checkpoint(tmp_path, capsys):
    assert cli.main(["eval", "--checkpoint", str(tmp_path / "nope.h5")]) == 2
    assert f"checkpoint {tmp_path / 'nope.h5'} does not exist" in error_line(capsys)


@pytest.mark.parametrize("content", [b"", b"\x89HDF\r\n\x1a\n" + b"\0" * 100, b"hello" * 1000])
def test_corrupt_checkpoint(tmp_path, capsys, content):
    path = tmp_path / "bad.h5"
    path.write_bytes(content)
    assert cli.main(["eval", "--checkpoint", str(path)]) == 2
    assert "truncated or corrupt" in error_line(capsys)


def test_resume_without_a_checkpoint(tmp_path, capsys):
    assert cli.main(["train", "--out", str(tmp_path / "empty"), "--resume", "--quiet"]) == 2
    assert "does not exist" in error_line(capsys)


def test_resume_without_a_run_folder(capsys):
    assert cli.main(["train", "--resume", "--quiet"]) == 2
    assert "--resume needs the run folder" in error_line(capsys)


def test_export_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert cli.main(["export", "--run", str(tmp_path)]) == 2
    assert "has no checkpoint last.h5" in error_line(capsys)
    assert cli.main(["export", "--run", str(tmp_path / "missing")]) == 2
    assert "does not exist" in error_line(capsys)


def test_missing_data_without_download(tmp_path, capsys):
    assert cli.main([*TRAIN, "--data", str(tmp_path), "--no-download", "--out", str(tmp_path / "r")]) == 2
    line = error_line(capsys)
    assert "MNIST train data not found" in line and str(tmp_path) in line


def test_corrupt_data(corrupt_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CONVLAB_CACHE", str(tmp_path / "cache"))
    assert cli.main([*TRAIN, "--data", str(corrupt_root), "--out", str(tmp_path / "r")]) == 2
    line = error_line(capsys)
    assert "train-images-idx3-ubyte.gz" in line and "truncated" in line


def test_a_second_run_into_the_same_folder_needs_resume_or_overwrite(tiny_root, tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setenv("CONVLAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = [*TRAIN, "--data", str(tiny_root), "--out", str(out), "--train-subset", "32",
            "--test-subset", "16"]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(args) == 2
    assert "already holds a run" in error_line(capsys)
    assert cli.main([*args, "--overwrite"]) == 0


def test_bench_without_the_benchmark_package(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "convlab.bench", None)
    assert cli.main(["bench"]) == 2
    assert "convlab bench" in error_line(capsys)


def test_summary_is_the_model_summary(capsys):
    assert cli.main(["summary", "lenet5"]) == 0
    assert "conv1" in capsys.readouterr().out


def test_a_failure_in_a_real_process_has_no_traceback_unless_debug(cli_env, tmp_path):
    done = run_cli(["eval", "--checkpoint", tmp_path / "nope.h5"], cli_env)
    assert done.returncode == 2
    expected = f"convlab eval: error: checkpoint {tmp_path / 'nope.h5'} does not exist"
    assert done.stderr.strip().splitlines() == [expected]
    debug = run_cli(["--debug", "eval", "--checkpoint", tmp_path / "nope.h5"], cli_env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "CheckpointError" in debug.stderr


@pytest.mark.skipif(backend.gpu_available(), reason="this machine has a GPU")
def test_asking_for_a_gpu_that_is_not_there(tiny_root, tmp_path, capsys):
    assert cli.main([*TRAIN[:-3], "--device", "gpu", "--data", str(tiny_root), "--out", str(tmp_path / "r")]) == 2
    assert "no CUDA GPU is usable here" in error_line(capsys)
