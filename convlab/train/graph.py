"""A whole training step captured once as a CUDA graph and replayed: one launch a step, no Python.

On the GPU a small convnet's eager step is bound by the host: each of its hundreds of kernels costs
a few microseconds of Python and launch overhead, more than the kernel itself at batch 128. A
`CapturedStep` runs the step (forward, loss, backward, optimiser step) eagerly a few times, then
records it on its own CUDA stream (CuPy's stream capture) and replays the recording:

    step = CapturedStep(model, criterion, optimizer, x_example, y_example)
    for x, y in batches:              # every batch of the example's shape and dtype
        loss = step(x, y)             # a device scalar; float(loss) waits for the step

What a recording fixes, and how this class keeps it honest:
- The arrays. Inputs are copied into the step's own buffers; parameters, gradients, optimiser
  buffers and BN statistics are updated in place. Before each replay the parameter, gradient and
  buffer arrays are compared (by address) with those at capture: if one was replaced
  (`load_state_dict`, `model.to`, a new optimiser state), the step is recorded again.
- The hyper-parameters. Kernel arguments (the learning rate, momentum, weight decay, Adam's
  bias corrections) are part of the recording, so the step is recorded again whenever they
  change: once per change of a per-epoch LR schedule; Adam's bias corrections change every step
  until they round to 1 in float64, so Adam is recorded for every step (correct, but slower than
  eager) and is refused unless `allow_recapture_every_step=True`.
- The memory. The step allocates from CuPy's pool on its own stream, whose free blocks no other
  stream is handed, so what the recording uses between replays stays its own.
- The matrix products. CuPy will not call cuBLAS during a capture, so while recording they go to
  cuBLAS directly (`convlab.kernels.blas`).
"""

from __future__ import annotations

from .. import backend
from ..kernels import blas


class CaptureError(RuntimeError):
    """The step cannot be recorded as a CUDA graph (no GPU, a host sync inside it, ...)."""


def _hyperparameters(optimizer):
    values = {name: getattr(optimizer, name) for name in optimizer.hyperparameters}
    if hasattr(optimizer, "betas"):  # Adam's step size depends on the step count
        values["step_count"] = optimizer.step_count + 1
    return values


class CapturedStep:
    """One training step of `model` recorded as a CUDA graph and replayed (see the module doc)."""

    def __init__(self, model, criterion, optimizer, x, y, warmup=3, allow_recapture_every_step=False):
        if not backend.gpu_available():
            raise CaptureError("CapturedStep needs a CUDA GPU with CuPy; this machine has none")
        import cupy

        if not isinstance(x, cupy.ndarray) or not isinstance(y, cupy.ndarray):
            raise CaptureError(f"CapturedStep: x and y must be CuPy arrays, got {type(x).__name__} and "
                               f"{type(y).__name__}")
        from .. import kernels

        if not kernels.enabled():
            raise CaptureError("CapturedStep needs convlab's CUDA fast paths, which are off; "
                               "call convlab.kernels.enable(True) (their matrix products are the ones a "
                               "graph can record)")
        if hasattr(optimizer, "betas") and not allow_recapture_every_step:
            raise CaptureError(
                f"CapturedStep: {type(optimizer).__name__}'s bias corrections change every step, so its "
                "step would be recorded again every step (slower than eager); pass "
                "allow_recapture_every_step=True to accept that, or use SGD")
        self.model, self.criterion, self.optimizer = model, criterion, optimizer
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.x = cupy.array(x)  # the recording reads its own buffers
        self.y = cupy.array(y)
        self.captures = 0
        self.graph = None
        self.loss = None
        self._wait_for_caller()
        with self.stream:
            for _ in range(warmup):
                self.loss = self._eager_step()
        self._capture()

    # -- recording ------------------------------------------------------------------------
    def _eager_step(self):
        loss = self.criterion(self.model(self.x), self.y)
        self.optimizer.zero_grad()
        self.model.backward(self.criterion.backward())
        self.optimizer.step()
        return loss

    def _arrays(self):
        """Addresses of every array the recording writes or reads across steps."""
        import cupy

        def ptr(a):
            return a.data.ptr if isinstance(a, cupy.ndarray) else None

        ptrs = []
        for p in self.optimizer.params:
            ptrs += [ptr(p.data), ptr(p.grad)]
        for state in self.optimizer.state:
            ptrs += [ptr(v) for v in state.values()]
        ptrs += [ptr(b) for _, b in self.model.named_buffers()]
        return tuple(ptrs)

    def _capture(self):
        import cupy

        # The optimiser counts steps on the host; the recording's step is counted at each replay.
        count = self.optimizer.step_count
        self.stream.synchronize()
        self.graph = None
        with self.stream, blas.recording_graph():
            self.stream.begin_capture()
            try:
                loss = self._eager_step()
            except BaseException as exc:
                try:
                    self.stream.end_capture()
                except Exception:
                    pass
                if isinstance(exc, (cupy.cuda.runtime.CUDARuntimeError, RuntimeError)):
                    raise CaptureError(f"CapturedStep: the step could not be recorded: {exc}") from exc
                raise
            graph = self.stream.end_capture()
        self.optimizer.step_count = count
        self.graph, self.loss = graph, loss
        self.captures += 1
        self._recorded = (self._arrays(), _hyperparameters(self.optimizer))

    def _current(self):
        return self._arrays(), _hyperparameters(self.optimizer)

    # -- replaying --------------------------------------------------------------------------
    def _wait_for_caller(self):
        """Our stream starts after what the caller's current stream has queued (the input copies)."""
        import cupy

        self.stream.wait_event(cupy.cuda.get_current_stream().record())

    def replay(self):
        """Run the recorded step once on the current buffers; returns the loss (a device scalar)."""
        import cupy

        if self._current() != self._recorded:
            with self.stream:
                self._capture()
        self._wait_for_caller()
        self.graph.launch(self.stream)
        self.optimizer.step_count += 1
        cupy.cuda.get_current_stream().wait_event(self.stream.record())
        return self.loss

    def __call__(self, x=None, y=None):
        """Copy (x, y) into the step's buffers (same shapes) and run the recorded step once."""
        for name, src, dst in (("x", x, self.x), ("y", y, self.y)):
            if src is None:
                continue
            if tuple(src.shape) != dst.shape:
                raise ValueError(f"CapturedStep: {name} must have the recorded shape {dst.shape}, got "
                                 f"{tuple(src.shape)}")
            import cupy

            dst[...] = cupy.asarray(src)
        return self.replay()
