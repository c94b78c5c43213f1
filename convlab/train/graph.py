"""A whole training step captured once as a CUDA graph and replayed: one launch a step, no Python.

On the GPU a small convnet's eager step is bound by the host: each of its hundreds of kernels costs
a few microseconds of Python and launch overhead, more than the kernel itself at batch 128. A
`CapturedStep` runs the step (forward, loss, backward, optimiser step) eagerly, then records it on
its own CUDA stream (CuPy's stream capture) and replays the recording:

    step = CapturedStep(model, criterion, optimizer, x_example, y_example)
    for x, y in batches:              # every batch of the example's shape
        loss = step(x, y)             # a device scalar; float(loss) waits for the step
        schedule.step()               # learning-rate changes reach the next replay

What a recording fixes, and how this class keeps it honest:
- The arrays. Inputs are copied into the step's own buffers; parameters, gradients, optimiser
  buffers and BN statistics are updated in place. Before each replay their addresses are compared
  with those at capture: if one was replaced (`load_state_dict`, `model.to`, a new optimiser
  state), the step is recorded again.
- The hyper-parameters. The fused optimiser kernels read what a schedule may change every step
  (the learning rate and SGD's momentum; Adam's bias corrections and beta1) from device memory,
  which `replay` writes before each launch, so LR schedules, one-cycle momentum and Adam's step
  count need no new recording. The others (weight decay, Nesterov, beta2, eps, turning momentum
  on or off) are part of the recording: a change records the step again.
- The memory. While recording, the step allocates from a CuPy memory pool of its own (as PyTorch
  gives each graph a private pool): the blocks a recording reuses for its intermediates look free
  to a pool, and CuPy's default pool releases free blocks (`free_all_blocks`, or on an
  out-of-memory retry), which would hand them to other arrays while replays still write them.
- The matrix products. CuPy will not call cuBLAS during a capture, so while recording they go to
  cuBLAS directly (`convlab.kernels.blas`).
- No host synchronisation may happen inside the step (a BN layer with momentum=None reads its
  batch count on the host, for one): recording then fails with a `CaptureError`.
"""

from __future__ import annotations

from .. import backend, kernels
from ..kernels import blas


class CaptureError(RuntimeError):
    """The step cannot be recorded as a CUDA graph (no GPU, a host sync inside it, ...)."""


def _recorded_hyperparameters(optimizer):
    """The optimiser's values that a recording fixes: with the fused kernel, all but those it
    reads from device memory; with per-parameter updates (no fused kernel), every one."""
    if optimizer.fused:
        return optimizer.recorded_hyperparameters()
    values = {name: getattr(optimizer, name) for name in optimizer.hyperparameters}
    values["device_hyperparameters"] = optimizer.device_hyperparameters()
    return values


class CapturedStep:
    """One training step of `model` recorded as a CUDA graph and replayed (see the module doc).

    `warmup` eager steps on (x, y) come first, and at least one in which every parameter already
    had a gradient (one more, if needed), so the optimiser's state and device tables exist before
    recording; `warmed=True` says the caller has just run such a step itself (then none is run:
    the Trainer records after its own eager step). Recording runs nothing: the first replay is
    the first step the recording takes.
    `loss` and `logits` are the recording's outputs: each replay writes them in place (before
    the first replay they hold nothing yet).
    """

    def __init__(self, model, criterion, optimizer, x, y, warmup=2, warmed=False):
        if not backend.gpu_available():
            raise CaptureError("CapturedStep needs a CUDA GPU with CuPy; this machine has none")
        import cupy

        if not isinstance(x, cupy.ndarray) or not isinstance(y, cupy.ndarray):
            raise CaptureError(f"CapturedStep: x and y must be CuPy arrays, got {type(x).__name__} and "
                               f"{type(y).__name__}")
        if not kernels.enabled():
            raise CaptureError("CapturedStep needs convlab's CUDA fast paths, which are off; "
                               "call convlab.kernels.enable(True) (their matrix products are the ones a "
                               "graph can record)")
        self.model, self.criterion, self.optimizer = model, criterion, optimizer
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.pool = cupy.cuda.MemoryPool()  # what recordings allocate (see the module doc)
        self.x = cupy.array(x)  # the recording reads its own buffers
        self.y = cupy.array(y)
        self.captures = 0
        self.graph = None
        self._buffer_dicts = [m._buffers for m in model.modules() if m._buffers]
        self.loss = self.logits = None
        self._warm = bool(warmed)
        self._wait_for_caller()
        with self.stream:
            for _ in range(warmup):
                self._eager_step()
            while not self._warm:
                self._eager_step()
        self._capture()

    # -- recording ------------------------------------------------------------------------
    def _eager_step(self):
        had_grads = all(p.grad is not None for p in self.optimizer.params)
        logits = self.model(self.x)
        loss = self.criterion(logits, self.y)
        self.optimizer.zero_grad()
        self.model.backward(self.criterion.backward())
        self.optimizer.step()
        self._warm = self._warm or had_grads
        self.loss, self.logits = loss, logits

    def _arrays(self):
        """Every array the recording reads or writes across steps (parameters, gradients,
        optimiser state, module buffers), as the objects themselves."""
        out = []
        for p in self.optimizer.params:
            out += (p.data, p.grad)
        for state in self.optimizer.state:
            out += state.values()
        for buffers in self._buffer_dicts:
            out += buffers.values()
        return out

    def _capture(self):
        import cupy

        # The optimiser counts steps on the host; `replay` counts each replayed step.
        count = self.optimizer.step_count
        self.stream.synchronize()
        self.graph = None
        with self.stream, blas.recording_graph(), cupy.cuda.using_allocator(self.pool.malloc):
            self.stream.begin_capture()
            try:
                self._eager_step()
            except BaseException as exc:
                self.optimizer.step_count = count
                try:
                    self.stream.end_capture()
                except Exception:
                    pass
                if isinstance(exc, (cupy.cuda.runtime.CUDARuntimeError, RuntimeError, NotImplementedError)):
                    raise CaptureError(f"CapturedStep: the step could not be recorded: {exc}") from exc
                raise
            graph = self.stream.end_capture()
        self.optimizer.step_count = count
        self.graph = graph
        # The recording reads the optimiser's device tables through baked pointers: hold them, so
        # the table cache (a bounded FIFO) cannot free one under it.
        self._tables = list(kernels.optim._TABLES.values())
        self.captures += 1
        # Held, not just compared: the recording writes into these, so they must outlive it even
        # if the model lets go of one (then the next replay records again, as _unchanged finds).
        self._recorded = (self._arrays(), _recorded_hyperparameters(self.optimizer))

    def _unchanged(self):
        """True when the arrays and fixed hyper-parameters are those of the recording (a check of
        identities, about 30 µs for ResNet-20 on a slow CPU, run before every replay)."""
        arrays, hyper = self._recorded
        current = self._arrays()
        return (len(current) == len(arrays) and all(a is b for a, b in zip(current, arrays))
                and _recorded_hyperparameters(self.optimizer) == hyper)

    # -- replaying --------------------------------------------------------------------------
    def _wait_for_caller(self):
        """Our stream starts after what the caller's current stream has queued (the input copies)."""
        import cupy

        self.stream.wait_event(cupy.cuda.get_current_stream().record())

    def replay(self):
        """Run the recorded step once on the current buffers; returns the loss (a device scalar)."""
        import cupy

        if not self._unchanged():
            with self.stream:
                self._capture()
        self._wait_for_caller()
        self.optimizer.step_count += 1
        with self.stream:
            self.optimizer.store_device_hyperparameters()
        self.graph.launch(self.stream)
        cupy.cuda.get_current_stream().wait_event(self.stream.record())
        return self.loss

    def __call__(self, x=None, y=None):
        """Copy (x, y) into the step's buffers (same shapes) and run the recorded step once."""
        import cupy

        for name, src, dst in (("x", x, self.x), ("y", y, self.y)):
            if src is None:
                continue
            if tuple(src.shape) != dst.shape:
                raise ValueError(f"CapturedStep: {name} must have the recorded shape {dst.shape}, got "
                                 f"{tuple(src.shape)}")
            dst[...] = cupy.asarray(src)
        return self.replay()
