"""The Trainer: it learns, it is repeatable bit for bit on the CPU, it resumes mid-epoch exactly,
it emits its events, it can be paused and stopped from another thread, and it stops cleanly on
divergence without ever writing non-finite weights."""

import json
import threading

import numpy as np
import pytest

from convlab.train import (
    CheckpointError,
    TrainConfig,
    load_checkpoint,
    make_trainer,
    read_checkpoint,
    resume,
)

from .tiny_data import tiny_mnist


def config(tmp_path=None, **overrides):
    values = dict(model="lenet5", dataset="mnist", epochs=2, batch_size=32, device="cpu", seed=3,
                  optimizer="sgd", lr=0.05, schedule="cosine",
                  out_dir=None if tmp_path is None else str(tmp_path))
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def data():
    return tiny_mnist(n_train=192, n_test=64)


def trainer_for(data, cfg):
    train, test = data
    return make_trainer(cfg, train_data=train, test_data=test)


def strip_timing(history):
    return [{k: v for k, v in r.items() if "seconds" not in k and "per_sec" not in k} for r in history]


def test_training_learns_the_tiny_task(data):
    trainer = trainer_for(data, config(epochs=4, lr=0.1, schedule="onecycle"))
    outcome = trainer.run()
    assert outcome["reason"] == "completed"
    assert [r["epoch"] for r in trainer.history] == [1, 2, 3, 4]
    assert trainer.history[-1]["train_loss"] < trainer.history[0]["train_loss"]
    assert trainer.history[-1]["test_accuracy"] > 0.5  # chance is 0.1


def test_same_seed_gives_bit_identical_metrics_and_weights(data):
    runs = []
    for _ in range(2):
        trainer = trainer_for(data, config(augment="crop", model_options={}))
        trainer.run()
        runs.append((strip_timing(trainer.history), trainer.model.state_dict()))
    assert runs[0][0] == runs[1][0]
    for name in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][name], runs[1][1][name])


def test_another_seed_gives_other_metrics(data):
    a, b = trainer_for(data, config(seed=1)), trainer_for(data, config(seed=2))
    a.run()
    b.run()
    assert strip_timing(a.history) != strip_timing(b.history)


@pytest.mark.parametrize("stop_after_step", [3, 6, 7])
def test_resuming_a_mid_epoch_checkpoint_ends_exactly_like_an_uninterrupted_run(data, tmp_path,
                                                                                 stop_after_step):
    # 192 samples / batch 32 = 6 steps per epoch: stop in epoch 1, at its end, and in epoch 2.
    cfg = dict(epochs=3, augment="crop", schedule="onecycle", optimizer="adam", lr=3e-3)
    straight = trainer_for(data, config(tmp_path / "straight", **cfg))
    straight.run()

    interrupted = trainer_for(data, config(tmp_path / "interrupted", **cfg))
    interrupted.on("step", lambda e: interrupted.stop() if e["step"] == stop_after_step else None)
    assert interrupted.run()["reason"] == "stopped"
    saved = read_checkpoint(tmp_path / "interrupted" / "last.h5")
    assert saved["state"]["progress"]["step"] == stop_after_step

    train, test = data
    resumed = resume(tmp_path / "interrupted" / "last.h5", train_data=train, test_data=test)
    assert resumed.step == stop_after_step
    assert resumed.run()["reason"] == "completed"
    assert strip_timing(resumed.history) == strip_timing(straight.history)
    final_straight, final_resumed = straight.model.state_dict(), resumed.model.state_dict()
    for name in final_straight:
        np.testing.assert_array_equal(final_resumed[name], final_straight[name])


def test_a_checkpoint_saved_from_a_step_callback_resumes_exactly(data, tmp_path):
    # What the GUI's "save now" does: save between two steps while the run goes on.
    straight = trainer_for(data, config(tmp_path / "run", epochs=2, augment="crop"))
    snapshot = tmp_path / "snapshot.h5"
    straight.on("step", lambda e: straight.save_checkpoint(snapshot) if e["step"] == 4 else None)
    straight.run()
    train, test = data
    resumed = resume(snapshot, train_data=train, test_data=test, out_dir=str(tmp_path / "resumed"))
    assert (resumed.epoch, resumed.batch_in_epoch) == (0, 4)
    resumed.run()
    assert strip_timing(resumed.history) == strip_timing(straight.history)


def test_events_are_emitted_in_order_with_their_fields(data, tmp_path):
    trainer = trainer_for(data, config(tmp_path, epochs=2, checkpoint_every=4))
    seen = []
    for event in ("step", "epoch", "checkpoint", "finished"):
        trainer.on(event, lambda payload, event=event: seen.append((event, payload)))
    trainer.run()
    names = [e for e, _ in seen]
    assert names.count("step") == 12 and names.count("epoch") == 2 and names[-1] == "finished"
    step = next(p for e, p in seen if e == "step")
    assert set(step) >= {"epoch", "step", "loss", "accuracy", "lr", "images_per_sec", "eta_seconds"}
    epoch = next(p for e, p in seen if e == "epoch")
    assert set(epoch) >= {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "test_top5",
                          "lr", "seconds"}
    assert epoch["confusion_matrix"].sum() == 64
    checkpoints = [p["step"] for e, p in seen if e == "checkpoint"]
    assert checkpoints == [0, 4, 6, 8, 12]  # start, every 4 steps, each epoch end (not twice at step 12)
    assert seen[-1][1]["reason"] == "completed" and len(seen[-1][1]["history"]) == 2


def test_unknown_event_name_is_rejected(data):
    trainer = trainer_for(data, config())
    with pytest.raises(ValueError, match="unknown event 'epoch_end'"):
        trainer.on("epoch_end", print)


def test_pause_resume_and_stop_from_another_thread(data):
    trainer = trainer_for(data, config(epochs=50))
    steps, paused_at = [], threading.Event()

    def on_step(e):
        steps.append(e["step"])
        if e["step"] == 2:
            trainer.pause()
            paused_at.set()

    trainer.on("step", on_step)
    worker = threading.Thread(target=trainer.run)
    worker.start()
    assert paused_at.wait(30)
    worker.join(0.3)
    assert worker.is_alive() and trainer.paused and steps == [1, 2]
    trainer.resume()
    while len(steps) < 4:
        worker.join(0.01)
    trainer.stop()
    worker.join(30)
    assert not worker.is_alive()
    assert 4 <= trainer.step < 50 * 6


def test_a_huge_learning_rate_stops_the_run_as_diverged_and_keeps_the_checkpoint(data, tmp_path):
    trainer = trainer_for(data, config(tmp_path, lr=1e6, schedule="constant", momentum=0.0))
    errors = []
    trainer.on("error", errors.append)
    outcome = trainer.run()
    assert outcome["reason"] == "diverged"
    assert "training diverged at step" in outcome["message"]
    assert str(tmp_path / "last.h5") in outcome["message"]
    assert errors and errors[0]["message"] == outcome["message"]
    model, info = load_checkpoint(tmp_path / "last.h5")
    assert all(np.isfinite(v).all() for v in model.state_dict().values())


def test_save_checkpoint_refuses_non_finite_weights(data, tmp_path):
    trainer = trainer_for(data, config(tmp_path))
    trainer.save_checkpoint()
    before = (tmp_path / "last.h5").read_bytes()
    trainer.model.fc3.weight.data[0, 0] = np.nan
    with pytest.raises(RuntimeError, match="weights are no longer finite"):
        trainer.save_checkpoint()
    assert (tmp_path / "last.h5").read_bytes() == before


def test_checkpoint_holds_everything_a_resume_needs(data, tmp_path):
    trainer = trainer_for(data, config(tmp_path, epochs=1))
    trainer.run()
    ckpt = read_checkpoint(tmp_path / "last.h5")
    assert ckpt["model_name"] == "lenet5" and ckpt["model_options"]["num_classes"] == 10
    assert set(ckpt["model_state"]) == set(trainer.model.state_dict())
    assert set(ckpt["state"]) >= {"optimizer", "schedule", "rng", "loader", "progress", "history", "config"}
    assert ckpt["state"]["config"]["lr"] == 0.05 and ckpt["convlab_version"]
    model, info = load_checkpoint(tmp_path / "last.h5")
    assert info["epoch"] == 1 and info["history"][0]["test_accuracy"] == trainer.history[0]["test_accuracy"]
    x = np.random.default_rng(0).normal(size=(2, 1, 28, 28)).astype(np.float32)
    trainer.model.eval()
    np.testing.assert_array_equal(model(x), trainer.model(x))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_checkpoint_is_refused_with_a_clear_error(data, tmp_path, damage):
    trainer = trainer_for(data, config(tmp_path, epochs=1))
    trainer.save_checkpoint()
    path = tmp_path / "last.h5"
    raw = path.read_bytes()
    damaged = {"truncate": raw[: len(raw) // 2], "garbage": b"not a checkpoint" * 100, "empty": b""}
    path.write_bytes(damaged[damage])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_a_flipped_weight_byte_fails_the_checksum(data, tmp_path):
    trainer = trainer_for(data, config(tmp_path, epochs=1))
    path = trainer.save_checkpoint()
    raw = bytearray(path.read_bytes())
    weights = trainer.model.fc1.weight.data.astype(np.float32).tobytes()
    at = bytes(raw).find(weights[:64])
    assert at > 0
    raw[at + 10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_a_run_folder_gets_config_metrics_logs_and_final_report(data, tmp_path):
    trainer = trainer_for(data, config(tmp_path, val_fraction=0.25))
    trainer.run()
    assert json.loads((tmp_path / "config.json").read_text())["val_fraction"] == 0.25
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["accuracy"] == trainer.history[-1]["test_accuracy"] and len(final["per_class"]) == 10
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["val_accuracy"] == trainer.history[-1]["val_accuracy"]
    header, *lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert "test_accuracy" in header.split(",") and len(lines) == 2


def test_validation_split_is_carved_from_train(data):
    trainer = trainer_for(data, config(val_fraction=0.25))
    assert len(trainer.train_loader.dataset) == 144 and len(trainer.val_loader.dataset) == 48


def test_reduce_on_plateau_divides_the_rate_when_accuracy_stalls(data):
    trainer = trainer_for(data, config(epochs=4, schedule="plateau", patience=0, lr=1e-5))
    trainer.run()
    lrs = [r["lr"] for r in trainer.history]
    assert lrs[0] <= 1e-5 and min(lrs) < 1e-5


def test_make_trainer_rejects_a_bad_config_naming_the_field(data):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        trainer_for(data, config(batch_size=0))
    with pytest.raises(ValueError, match="unknown augmentation 'rotate'"):
        trainer_for(data, config(augment="crop+rotate"))
    with pytest.raises(ValueError, match="unknown model 'lenet7'"):
        trainer_for(data, config(model="lenet7"))


def test_stop_before_run_stops_before_the_first_step_and_run_again_continues(data):
    trainer = trainer_for(data, config(epochs=1))
    trainer.stop()
    assert trainer.run()["reason"] == "stopped" and trainer.step == 0
    assert trainer.run()["reason"] == "completed" and trainer.step == 6


class _EagerStandIn:
    """A CapturedStep stand-in for the CPU: records the calls the trainer makes and runs each
    "replay" as the eager step, so the run must equal an eager one step for step."""

    made = []

    def __init__(self, model, criterion, optimizer, x, y, warmup=2, warmed=False):
        assert (warmup, warmed) == (0, True), "the trainer records right after its own eager step"
        assert all(p.grad is not None for p in optimizer.params)
        self.model, self.criterion, self.optimizer = model, criterion, optimizer
        self.x, self.replays = np.array(x), 0
        _EagerStandIn.made.append(self)

    def __call__(self, x, y):
        assert x.shape == self.x.shape
        self.replays += 1
        self.logits = self.model(x)
        loss = self.criterion(self.logits, y)
        self.optimizer.zero_grad()
        self.model.backward(self.criterion.backward())
        self.optimizer.step()
        return loss


def test_cuda_graph_records_after_the_second_step_and_replays_full_batches_only(monkeypatch):
    """The trainer's side of cuda_graph, on the CPU: when it records, which steps replay, and that
    a recording that fails leaves the run training eagerly (CapturedStep itself is tested on a GPU)."""
    from convlab import backend
    from convlab.train import graph

    train, test = tiny_mnist(n_train=200, n_test=64)  # batches of 32: six full ones and one of 8

    def run(cuda_graph):
        trainer = make_trainer(config(seed=5, schedule="onecycle"), train_data=train, test_data=test)
        trainer.cuda_graph = cuda_graph
        losses = []
        trainer.on("step", lambda e: losses.append(e["loss"]))
        trainer.run()
        return trainer, losses

    monkeypatch.setattr(backend, "gpu_available", lambda: True)
    monkeypatch.setattr(graph, "CapturedStep", _EagerStandIn)
    _EagerStandIn.made.clear()
    eager, eager_losses = run(False)
    replayed, losses = run(True)
    (stand_in,) = _EagerStandIn.made
    assert replayed.captured is stand_in
    # Two epochs of six full batches replay, but for steps 1 and 2 (eager, then recorded); the
    # batches of 8 run eagerly.
    assert stand_in.replays == 12 - 2 and len(losses) == 14
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-6)

    def refuse(*args, **kwargs):
        raise graph.CaptureError("CapturedStep: the step could not be recorded: a host sync")

    monkeypatch.setattr(graph, "CapturedStep", refuse)
    with pytest.warns(RuntimeWarning, match="cuda_graph is off for this run: .*a host sync"):
        failed, failed_losses = run(True)
    assert failed.captured is None and failed.cuda_graph is False
    np.testing.assert_allclose(failed_losses, eager_losses, rtol=1e-6)

    class RefusesLater(_EagerStandIn):
        """Records, replays three steps, then cannot record again (nothing runs on that call)."""

        def __call__(self, x, y):
            if self.replays == 3:
                raise graph.CaptureError("CapturedStep: the step could not be recorded: late")
            return super().__call__(x, y)

    _EagerStandIn.made.clear()
    monkeypatch.setattr(graph, "CapturedStep", RefusesLater)
    with pytest.warns(RuntimeWarning, match="cuda_graph is off for this run: .*late"):
        later, later_losses = run(True)
    assert later.captured is None and _EagerStandIn.made[0].replays == 3
    np.testing.assert_allclose(later_losses, eager_losses, rtol=1e-6)
