"""CPU threads: convlab splits its heavy ops over the batch itself and runs BLAS single-threaded.

A small network's GEMMs are thin (16 to 64 output channels) and its other ops are memory-bound
copies, so a multi-threaded BLAS call per whole-batch op leaves the cores idle between calls and
streams every temporary through main memory. Instead each op runs on chunks of a few images,
one thread per chunk: im2col, GEMM and the strided adds of a chunk stay in that core's cache,
and every op (not just the GEMMs) uses all cores. Threads block rather than spin, so a busy
machine slows convlab down gracefully instead of thrashing.

The threads share the GIL. Each NumPy call in a chunk lets it go and takes it back; when the
other thread holds it just then, the caller sleeps until woken, which on this kind of machine
(a 2-vCPU VM) costs about 10 µs: two threads making back-to-back calls of 5-12 µs each ran no
faster than one, while calls of 25 µs and more ran 1.5-1.9× faster. So chunk bodies make few,
long calls, and the Python between them is kept short (a region with nothing to do costs
30-90 µs: two wake-ups).

The thread count comes from `set_num_threads`, else $CONVLAB_NUM_THREADS, else
$OMP_NUM_THREADS, else the CPUs this process may run on. Chunk k always goes to thread
k mod T and each thread sums its own partial results, in order, so for a given thread count
every result is bitwise reproducible.
"""

from __future__ import annotations

import functools
import os
import threading

import numpy as np

_state = {"threads": None, "pool": None, "blas": None}
_lock = threading.Lock()
_busy = threading.Lock()  # held by the thread whose region is using the pool's workers
_local = threading.local()


def _env_threads():
    for var in ("CONVLAB_NUM_THREADS", "OMP_NUM_THREADS"):
        raw = os.environ.get(var, "").strip()
        if raw:
            try:
                n = int(raw)
            except ValueError:
                raise ValueError(f"{var} must be a positive integer, got {raw!r}") from None
            if n < 1:
                raise ValueError(f"{var} must be a positive integer, got {raw!r}")
            return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def num_threads() -> int:
    """How many threads convlab's CPU ops use."""
    if _state["threads"] is None:
        set_num_threads(_env_threads())
    return _state["threads"]


def set_num_threads(n: int) -> None:
    """Use `n` threads for convlab's CPU ops (and keep NumPy's BLAS at one thread each)."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"the thread count must be a positive integer, got {n!r}")
    if getattr(_local, "inside", False):
        raise RuntimeError("set_num_threads was called from inside a parallel_for chunk; call it between ops")
    with _busy, _lock:  # waits for a region another thread is running
        if _state["pool"] is not None and _state["threads"] != n:
            for worker in _state["pool"]:
                worker.stop()
            _state["pool"] = None
        _state["threads"] = int(n)
        _limit_blas()


def _limit_blas():
    """Set NumPy's own BLAS (not PyTorch's or anyone else's) to one thread."""
    if _state["blas"] is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # a bare install without it: BLAS keeps its own threads
            _state["blas"] = []
            return
        numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
        libs = ThreadpoolController().select(user_api="blas")
        _state["blas"] = [lib for lib in libs.lib_controllers
                          if lib.filepath.startswith(numpy_dir) and "torch" not in lib.filepath]
    for lib in _state["blas"]:
        lib.set_num_threads(1)


class _Worker:
    """One pool thread. It waits on its own lock for a task, runs it and releases `done`: two
    lock hand-overs per region, where an executor adds a queue, a future and a condition (a region
    with nothing to do cost 33 µs through ThreadPoolExecutor here, 20 µs this way, and holds the
    GIL for less of it)."""

    def __init__(self, index):
        self._go, self._done = threading.Lock(), threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._task = self._outcome = None
        self.thread = threading.Thread(target=self._loop, name=f"convlab-{index}", daemon=True)
        self.thread.start()

    def _loop(self):
        _local.inside = True  # a pool thread only ever runs chunks
        while True:
            self._go.acquire()
            task, self._task = self._task, None
            if task is None:  # stop()
                return
            try:
                self._outcome = (None, task())
            except BaseException as exc:  # handed to the caller by wait()
                self._outcome = (exc, None)
            self._done.release()

    def start(self, task):
        self._task = task
        self._go.release()

    def wait(self):
        """The task's (exception, result), once it has finished."""
        self._done.acquire()
        outcome, self._outcome = self._outcome, None
        return outcome

    def stop(self):
        self._task = None
        self._go.release()
        self.thread.join()


def _workers():
    with _lock:
        if _state["pool"] is None:
            _state["pool"] = [_Worker(i) for i in range(1, num_threads())]
        return _state["pool"]


def _after_fork_in_child():
    """A forked child has none of the parent's threads: start a fresh pool when it needs one."""
    global _busy, _lock
    _busy, _lock = threading.Lock(), threading.Lock()
    _state["pool"] = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def chunks(n: int, grain: int):
    """The (start, stop) ranges that split range(n) into pieces of `grain` (the last may be shorter)."""
    grain = max(int(grain), 1)
    return [(s, min(s + grain, n)) for s in range(0, n, grain)]


def parallel_for(n: int, grain: int, body, xp=np):
    """Call body(start, stop, t) for the chunks of range(n); returns each thread's list of results.

    Chunk k runs on thread t = k mod T (the caller is thread 0) and a thread's chunks run in
    order, so callers can keep one accumulator per t. With one thread, one chunk, a CuPy array
    module (the GPU runs the whole batch at once), or when called from inside a chunk, the
    chunks run here, in order, on t = 0.
    """
    parts = chunks(n, grain)
    t_count = min(num_threads(), len(parts))
    if xp is not np or t_count <= 1 or getattr(_local, "inside", False):
        if xp is not np:
            parts = [(0, n)]
        return [[body(s, e, 0) for s, e in parts]]

    def run(t):
        return [body(s, e, t) for s, e in parts[t::t_count]]

    def here(ts):
        """Run threads ts's chunks on the calling thread, as chunks (nested calls run inline)."""
        _local.inside = True
        try:
            return [run(t) for t in ts]
        finally:
            _local.inside = False

    if not _busy.acquire(blocking=False):
        # Another thread's region has the workers (say, a GUI probe during training): run here,
        # each chunk under its own t, so per-thread sums come out the same.
        return here(range(t_count))
    try:
        workers = _workers()
        for t in range(1, t_count):
            workers[t - 1].start(lambda t=t: run(t))
        error, mine = None, None
        try:
            mine = here([0])[0]
        except BaseException as exc:
            error = exc
        outcomes = [workers[t - 1].wait() for t in range(1, t_count)]  # wait for all before raising
    finally:
        _busy.release()
    for exc, _ in outcomes:
        error = error or exc
    if error is not None:
        raise error
    return [mine] + [result for _, result in outcomes]


class Sums:
    """Per-thread running sums of a fixed tuple of arrays, for reductions inside parallel_for.

    A chunk calls add(t, a, b, ...) with fresh arrays (not scratch views) or None; total() sums
    the threads' sums in thread order, so the result depends only on the thread count.
    """

    def __init__(self):
        self._acc = {}

    def add(self, t, *parts):
        acc = self._acc.get(t)
        if acc is None:
            self._acc[t] = list(parts)
            return
        for i, p in enumerate(parts):
            if p is not None:
                acc[i] += p

    def total(self):
        out = None
        for t in sorted(self._acc):
            if out is None:
                out = self._acc[t]
                continue
            for i, p in enumerate(self._acc[t]):
                if p is not None:
                    out[i] += p
        return tuple(out)


_MIN_PARALLEL_BYTES = 1 << 20


def grain_for(n: int, bytes_per_item: int, target: int = 1 << 21) -> int:
    """Items per chunk so a chunk's working set is about `target` bytes (2 MiB: one core's L2),
    evened out so every thread gets the same number of chunks (no thread idles at the end)."""
    return _grain(int(n), int(bytes_per_item), int(target), num_threads(), _MIN_PARALLEL_BYTES)


@functools.lru_cache(maxsize=1024)
def _grain(n, bytes_per_item, target, t, min_parallel):
    """grain_for's answer, worked out once per question (a training step asks the same ones
    every step, and the search below costs microseconds of the GIL)."""
    if n * bytes_per_item < min_parallel:
        return n  # too little work to pay for waking the threads (tens of microseconds)
    grain = max(1, min(n, target // max(bytes_per_item, 1)))
    count = -(-n // grain)
    if t <= 1 or n < t:
        return -(-n // count)
    count = -(-count // t) * t
    base = -(-n // count)
    # equal chunks: the nearest grain (smaller first) whose chunk count is a multiple of T
    for g in (g for d in range(n) for g in (base - d, base + d + 1)):
        if 0 < g <= n and (-(-n // g)) % t == 0:
            return g
    return base


def dense_flat(a):
    """A 1-D view of `a`'s memory when it is dense in some axis order (e.g. channels-last), else None."""
    if a.flags.c_contiguous:  # the common case, without the sort (6 us)
        return a.reshape(-1)
    order = sorted(range(a.ndim), key=lambda i: -abs(a.strides[i]))
    v = a.transpose(order)
    if not v.flags.c_contiguous:
        return None
    return v.reshape(-1)


def elementwise(fn, out, *inputs):
    """Run fn(out_chunk, *input_chunks) over flat chunks of arrays that share one dense layout,
    one chunk per thread: a streaming op gains nothing from cache-sized chunks, and each extra
    chunk costs a thread hand-over.

    Returns False (and does nothing) when the arrays are not dense in the same axis order, so the
    caller can fall back to the whole-array expression.
    """
    arrays = (out,) + inputs
    if any(a.shape != out.shape or a.strides != out.strides for a in inputs):
        return False
    flats = [dense_flat(a) for a in arrays]
    if any(f is None for f in flats):
        return False
    size = flats[0].size
    per_item = sum(a.itemsize for a in arrays)
    grain = size if size * per_item < _MIN_PARALLEL_BYTES else -(-size // num_threads())

    def body(s, e, t):
        fn(*(f[s:e] for f in flats))

    parallel_for(size, grain, body, xp=np if isinstance(out, np.ndarray) else None)
    return True
