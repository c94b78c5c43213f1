"""`convlab train / eval / export / search` end to end, on a tiny MNIST-format data set: a run killed
with SIGKILL and resumed ends exactly like an uninterrupted one, divergence exits non-zero with a
loadable checkpoint, and every mistake is one line on stderr with a non-zero exit status."""

import json
import signal
import subprocess
import sys
import time

from convlab.train import CheckpointError, load_checkpoint, read_checkpoint

from .conftest import run_cli

TINY = ["--model", "lenet5", "--dataset", "mnist", "--device", "cpu", "--batch-size", "16", "--seed", "5",
        "--quiet"]


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def epoch_rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if "seconds" not in k and "per_sec" not in k} for r in rows]


def test_train_prints_final_metrics_as_json_and_writes_logs_and_checkpoint(tiny_root, cli_env, tmp_path):
    out = tmp_path / "run"
    done = run_cli(["train", *TINY, "--epochs", "2", "--data", tiny_root, "--out", out, "--json"], cli_env)
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert 0 <= result["test_accuracy"] <= 1 and result["test_loss"] > 0
    assert result["epochs"] == 2 and result["steps"] == 2 * 16
    assert len(epoch_rows(out)) == 2
    assert (out / "metrics.csv").read_text().startswith("epoch,")
    assert read_checkpoint(out / "last.h5")["state"]["progress"]["epoch"] == 2
    assert json.loads((out / "final.json").read_text())["accuracy"] == result["test_accuracy"]


def test_a_run_killed_mid_epoch_and_resumed_ends_exactly_like_an_uninterrupted_run(tiny_root, cli_env,
                                                                                    tmp_path):
    args = [*TINY, "--epochs", "3", "--augment", "crop", "--data", tiny_root, "--checkpoint-every", "5",
            "--json"]
    straight = run_cli(["train", *args, "--out", tmp_path / "straight"], cli_env)
    assert straight.returncode == 0, straight.stderr

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "convlab.cli", "train", *map(str, args), "--out", str(out)]
    process = subprocess.Popen(command,
                               env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint, killed_at = out / "last.h5", None
    deadline = time.monotonic() + 100
    while killed_at is None and time.monotonic() < deadline and process.poll() is None:
        try:
            progress = read_checkpoint(checkpoint)["state"]["progress"]
        except CheckpointError:
            time.sleep(0.005)
            continue
        if progress["batch_in_epoch"] > 0:  # the first mid-epoch checkpoint is there
            process.send_signal(signal.SIGKILL)
            killed_at = progress["step"]
    process.wait(30)
    assert killed_at is not None, "the run ended before a mid-epoch checkpoint could be caught"
    assert process.returncode == -signal.SIGKILL

    resumed = run_cli(["train", "--out", out, "--resume", "--json", "--quiet"], cli_env)
    assert resumed.returncode == 0, resumed.stderr
    a, b = last_json(straight.stdout), last_json(resumed.stdout)
    for key in ("test_accuracy", "test_loss", "test_top5", "train_loss", "train_accuracy", "steps", "epochs"):
        assert a[key] == b[key], key
    assert epoch_rows(out) == epoch_rows(tmp_path / "straight")


def test_a_huge_learning_rate_exits_non_zero_naming_the_step_and_a_checkpoint_that_loads(tiny_root, cli_env,
                                                                                        tmp_path):
    out = tmp_path / "run"
    done = run_cli(["train", *TINY, "--lr", "1e6", "--data", tiny_root, "--out", out], cli_env)
    assert done.returncode == 1
    assert "training diverged at step" in done.stderr and "Traceback" not in done.stderr
    assert f"last good checkpoint is {out / 'last.h5'}" in done.stderr
    model, info = load_checkpoint(out / "last.h5")
    assert info["step"] is not None


def test_eval_reports_accuracy_and_the_confusion_matrix(tiny_root, cli_env, tmp_path):
    out = tmp_path / "run"
    trained = run_cli(["train", *TINY, "--epochs", "1", "--data", tiny_root, "--out", out], cli_env)
    assert trained.returncode == 0
    done = run_cli(["eval", "--checkpoint", out / "last.h5", "--data", tiny_root, "--json"], cli_env)
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert result["samples"] == 64 and len(result["confusion_matrix"]) == 10
    assert sum(map(sum, result["confusion_matrix"])) == 64
    table = run_cli(["eval", "--checkpoint", out / "last.h5", "--data", tiny_root], cli_env)
    assert "confusion matrix" in table.stdout and "precision" in table.stdout


def test_export_writes_curves_kernels_feature_maps_and_confusion_pngs(tiny_root, cli_env, tmp_path):
    out = tmp_path / "run"
    trained = run_cli(["train", *TINY, "--epochs", "2", "--data", tiny_root, "--out", out], cli_env)
    assert trained.returncode == 0
    done = run_cli(["export", "--run", out], cli_env)
    assert done.returncode == 0, done.stderr
    plots = out / "plots"
    names = {p.relative_to(plots).as_posix() for p in plots.rglob("*.png")}
    assert {"curves.png", "kernels.png", "confusion.png", "feature_maps/01-conv1.png",
            "feature_maps/02-conv2.png"} <= names
    assert all((plots / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)
    assert "matplotlib.backends.backend_qt" not in done.stderr


def test_search_prints_a_table_sorted_by_validation_accuracy(tiny_root, tmp_path, capsys, monkeypatch):
    from convlab import cli

    monkeypatch.setenv("CONVLAB_CACHE", str(tmp_path / "cache"))
    args = ["search", "--model", "lenet5", "--dataset", "mnist", "--data", str(tiny_root), "--device", "cpu",
            "--epochs", "3", "--batch-size", "16", "--schedule", "onecycle", "--lr", "1e-5,0.1", "--quiet"]
    assert cli.main([*args, "--json"]) == 0
    captured = capsys.readouterr()
    results = last_json(captured.out)["results"]
    assert [r["lr"] for r in results] == [0.1, 1e-5]
    assert results[0]["val_accuracy"] > results[1]["val_accuracy"]
    assert "trial 2/2: lr=0.1" in captured.err


def test_the_python_example_trains_and_reloads_its_checkpoint(tiny_root, cli_env, tmp_path):
    from .conftest import REPO

    env = dict(cli_env, CONVLAB_DATA=str(tiny_root))
    done = subprocess.run([sys.executable, REPO / "scripts/examples/train_lenet_mnist.py", "--epochs", "1",
                           "--out", tmp_path / "run"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("epoch 1: test accuracy") and lines[-1].startswith("reloaded lenet5 (epoch 1)")
    assert (tmp_path / "run" / "metrics.csv").is_file()


def test_ctrl_c_stops_after_the_step_with_a_resumable_checkpoint(tiny_root, cli_env, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "convlab.cli", "train", *TINY, "--epochs", "50", "--data", str(tiny_root),
               "--out", str(out)]
    process = subprocess.Popen(command, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 100
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "metrics.jsonl").is_file():  # one epoch done: the run is well under way
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.02)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "resume with `convlab train --out" in err and "Traceback" not in err
    progress = read_checkpoint(out / "last.h5")["state"]["progress"]
    assert 1 <= progress["epoch"] < 50
