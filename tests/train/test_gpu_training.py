"""On a CUDA GPU: the optimisers update CuPy parameters as they update NumPy ones, and a short run
trains, logs every `log_every` steps, checkpoints and resumes. Skipped where CuPy sees no GPU."""

import numpy as np
import pytest

from convlab import backend

pytestmark = pytest.mark.gpu

if not backend.gpu_available():
    pytest.skip("needs CuPy and a CUDA GPU", allow_module_level=True)

import cupy  # noqa: E402

from convlab.nn import Parameter  # noqa: E402
from convlab.optim import SGD, AdamW  # noqa: E402
from convlab.train import TrainConfig, make_trainer, resume  # noqa: E402

from .tiny_data import tiny_mnist  # noqa: E402


@pytest.mark.parametrize("cls, kwargs", [(SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
                                         (AdamW, dict(lr=1e-2, weight_decay=0.1))])
def test_optimizer_steps_on_the_gpu_match_the_cpu(cls, kwargs):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 8)).astype(np.float32)
    grads = [rng.normal(size=(16, 8)).astype(np.float32) for _ in range(4)]
    cpu, gpu = Parameter(w.copy()), Parameter(cupy.asarray(w))
    cpu_opt, gpu_opt = cls([cpu], **kwargs), cls([gpu], **kwargs)
    for g in grads:
        cpu.grad, gpu.grad = g.copy(), cupy.asarray(g)
        cpu_opt.step()
        gpu_opt.step()
    np.testing.assert_allclose(cupy.asnumpy(gpu.data), cpu.data, rtol=1e-5, atol=1e-6)


def test_a_gpu_run_trains_logs_every_n_steps_and_resumes(tmp_path):
    train, test = tiny_mnist(n_train=192, n_test=64)
    cfg = TrainConfig(model="lenet5", dataset="mnist", epochs=3, batch_size=32, device="gpu", lr=0.1,
                      schedule="onecycle", log_every=4, out_dir=str(tmp_path / "run"))
    trainer = make_trainer(cfg, train_data=train, test_data=test)
    steps = []
    trainer.on("step", lambda e: steps.append(e["step"]))
    trainer.on("step", lambda e: trainer.stop() if e["step"] == 8 else None)
    assert trainer.run()["reason"] == "stopped"
    assert steps == [4, 6, 8]  # every 4th step, and the last of each epoch
    resumed = resume(tmp_path / "run" / "last.h5", train_data=train, test_data=test)
    assert resumed.step == 8 and isinstance(resumed.model.fc1.weight.data, cupy.ndarray)
    assert resumed.run()["reason"] == "completed"
    assert [r["step"] for r in resumed.history] == [6, 12, 18]
    assert resumed.history[-1]["test_accuracy"] > 0.2  # chance is 0.1


def test_a_cuda_graph_run_trains_like_an_eager_run():
    """cuda_graph=True: the first two steps run eagerly and the second is then recorded; the rest
    replay it (one-cycle changes the learning rate and momentum every step without a new
    recording); the last, smaller batch of each epoch runs eagerly. The losses follow the eager
    run's."""
    train, test = tiny_mnist(n_train=200, n_test=64)  # batches of 32: six full ones and one of 8
    runs = {}
    for graph in (False, True):
        cfg = TrainConfig(model="lenet5", dataset="mnist", epochs=2, batch_size=32, device="gpu", lr=0.05,
                          schedule="onecycle", log_every=1, cuda_graph=graph)
        trainer = make_trainer(cfg, train_data=train, test_data=test)
        losses = []
        trainer.on("step", lambda e, losses=losses: losses.append((e["loss"], e["lr"], e["accuracy"])))
        assert trainer.run()["reason"] == "completed"
        runs[graph] = (np.array(losses), trainer)
    (eager, _), (replayed, trainer) = runs[False], runs[True]
    assert trainer.captured is not None and trainer.captured.captures == 1
    assert len(replayed) == len(eager) == 14
    np.testing.assert_allclose(replayed[:, 1], eager[:, 1], rtol=1e-12)  # the same schedule
    np.testing.assert_allclose(replayed[:, 0], eager[:, 0], rtol=1e-3)
    np.testing.assert_allclose(replayed[:, 2], eager[:, 2], atol=1 / 32 + 1e-9)
    for a, b in zip(trainer.model.parameters(), runs[False][1].model.parameters()):
        np.testing.assert_allclose(cupy.asnumpy(a.data), cupy.asnumpy(b.data), rtol=1e-3, atol=1e-5)
