"""CPU threads: convlab splits its heavy ops over the batch itself and runs BLAS single-threaded.

A small network's GEMMs are thin (16 to 64 output channels) and its other ops are memory-bound
copies, so a multi-threaded BLAS call per whole-batch op leaves the cores idle between calls and
streams every temporary through main memory. Instead each op runs on chunks of a few images,
one thread per chunk: im2col, GEMM and the strided adds of a chunk stay in that core's cache,
and every op (not just the GEMMs) uses all cores.

Between regions a worker spins for a few milliseconds (SPIN_SECONDS) before it blocks, as
OpenMP's threads do: a blocked thread whose CPU has idled 1-3 ms takes 66-88 µs to wake here, and a
LeNet-5 training step starts a region every 0.3-1.5 ms. It spins in C (a pthread spin lock,
through ctypes), without the GIL, and only while the threads are no more than the CPUs;
$CONVLAB_SPIN=0 makes the workers block at once.

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
import time

import numpy as np

_state = {"threads": None, "pool": None, "blas": None, "spin": None, "wake": None, "regions": 0,
          "parking": False}
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
    return _cpus()


def _cpus():
    """The CPUs this process may run on."""
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
        if _state["threads"] != n:
            _stop_pool()
        _state["threads"] = int(n)
        _limit_blas()


def set_spin(enabled: bool | None) -> None:
    """Whether worker threads spin between regions (True; where the C library has spin locks) or
    block at once (False); None: the default, $CONVLAB_SPIN, else spinning. Blocking leaves the
    cores to the process's other threads between ops: the desktop app turns spinning off, so its
    GUI thread gets a core while a run trains."""
    if enabled is not None and not isinstance(enabled, bool):
        raise ValueError(f"set_spin takes True, False or None, got {enabled!r}")
    if getattr(_local, "inside", False):
        raise RuntimeError("set_spin was called from inside a parallel_for chunk; call it between ops")
    with _busy, _lock:  # waits for a region another thread is running
        _stop_pool()
        _state["spin"] = None if enabled is None else (enabled and _SpinLocks.load()) or False


def _stop_pool():
    """Stop the workers and their watcher (the caller holds _busy and _lock); the next region
    starts a new pool."""
    if _state["pool"] is None:
        return
    for worker in _state["pool"]:
        worker.stop()
    _state["pool"] = None
    if _state["wake"] is not None:
        _state["wake"].set()  # the watcher sees its pool gone and ends


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


class _SpinLocks:
    """glibc's pthread spin locks, called through ctypes, which lets the GIL go for each call: a
    thread waiting in `lock` spins on its core, neither asleep nor holding the GIL. `load()` is
    None where the C library has none (macOS, Windows): workers then only block."""

    @staticmethod
    def load():
        try:
            import ctypes

            libc = ctypes.CDLL(None)
            fns = libc.pthread_spin_init, libc.pthread_spin_lock, libc.pthread_spin_unlock
        except (OSError, AttributeError, TypeError):  # TypeError: Windows has no CDLL(None)
            return None
        for f in fns:
            f.restype = ctypes.c_int
            f.argtypes = [ctypes.c_void_p] + ([ctypes.c_int] if f is fns[0] else [])
        return _SpinLocks(ctypes, *fns)

    def __init__(self, ctypes, init, lock, unlock):
        self._ctypes, self._init = ctypes, init
        self.lock, self.unlock = lock, unlock  # each takes a lock's address

    def new_held(self, keep):
        """A new spin lock, locked (spin locks have no owner: any thread may unlock it). Its
        memory goes into the list `keep`, which must outlive it; returns its address."""
        word = self._ctypes.c_int(0)  # glibc's pthread_spinlock_t is an int
        keep.append(word)
        address = self._ctypes.addressof(word)
        if self._init(address, 0) or self.lock(address):
            raise OSError("pthread_spin_init failed")
        return address


# After a region a worker spins for the next one for SPIN_SECONDS to twice that (how often the
# watcher looks), then parks, blocked on a lock. A blocked worker's wake-up costs 66-88 µs here
# once its vCPU has idled 1-3 ms (26-30 µs after up to 0.2 ms), and a LeNet-5 training step has
# regions 0.3-1.5 ms apart. OpenMP runtimes, PyTorch's among them, spin the same way.
SPIN_SECONDS = 0.005
_PARK = object()  # the task that tells a spinning worker to block instead


class _Worker:
    """One pool thread. Between tasks it waits for the next one on a spin lock (while regions
    keep coming) or, parked, on a blocking lock; the caller waits for a task's end on a spin lock.

    Spinning: the caller holds two spin locks, the batons, and the worker waits on baton k. To
    start a task the caller unlocks baton k; the worker takes it, unlocks it again and runs the
    task, then waits on baton k^1, still held. At the end of the region the caller locks baton k
    again (free by then). Two batons, so the worker can never take back the one it just let go.
    A region with nothing to do, back to back, took 52-55 µs with blocking waits, 26-34 µs this way. In 22 pairs of
    `convlab.bench.models` runs, alternating CONVLAB_SPIN=0 and 1, LeNet-5 training ran at
    1.000-1.205× PyTorch's speed (median 1.07) spinning, 0.951-1.116× (median 1.05, five runs
    below 1.0) blocking: a blocking worker loses most when the host is busy."""

    def __init__(self, index, spin):
        self._go = threading.Lock()  # a parked (or never spinning) worker waits on it
        self._go.acquire()
        self._task = self._outcome = None
        self._spin = spin
        self.spinning = False  # caller's view: the worker waits on baton k, not on _go
        self.parked = threading.Event()
        if spin is None:
            self._done = threading.Lock()  # released at a task's end
            self._done.acquire()
        else:
            self._words = []  # the spin locks' memory
            self._batons = [spin.new_held(self._words), spin.new_held(self._words)]
            self._ended = spin.new_held(self._words)  # unlocked by the worker at a task's end
            self._k = 0
        self.thread = threading.Thread(target=self._loop, name=f"convlab-{index}", daemon=True)
        self.thread.start()

    def _loop(self):
        _local.inside = True  # a pool thread only ever runs chunks
        spin, k, spinning = self._spin, 0, False
        while True:
            if spinning:
                spin.lock(self._batons[k])  # without the GIL: spins until the caller unlocks it
                task, self._task = self._task, None
                spin.unlock(self._batons[k])
                k ^= 1
                if task is _PARK:
                    spinning = False
                    self.parked.set()
                    continue
            else:
                self._go.acquire()
                task, self._task = self._task, None
            if task is None:  # stop()
                return
            try:
                self._outcome = (None, task())
            except BaseException as exc:  # handed to the caller by wait()
                self._outcome = (exc, None)
            if spin is None:
                self._done.release()
            else:
                spinning = True
                spin.unlock(self._ended)

    def start(self, task):
        self._task = task
        if self.spinning:
            self._spin.unlock(self._batons[self._k])
        else:
            self._go.release()

    def wait(self):
        """The task's (exception, result), once it has finished."""
        spin = self._spin
        if spin is None:
            self._done.acquire()
        else:
            spin.lock(self._ended)
            if self.spinning:  # take back the baton of this task (the worker let it go first)
                spin.lock(self._batons[self._k])
                self._k ^= 1
            self.spinning = True
        outcome, self._outcome = self._outcome, None
        return outcome

    def park(self):
        """Make a spinning worker block (the caller holds _busy: no region is running)."""
        if not self.spinning:
            return
        self.parked.clear()
        self._task = _PARK
        self._spin.unlock(self._batons[self._k])
        self.parked.wait()
        self._spin.lock(self._batons[self._k])
        self._k ^= 1
        self.spinning = False

    def stop(self):
        self.park()
        self._task = None
        self._go.release()
        self.thread.join()


def _watch(pool, wake):
    """The pool's watcher thread: parks the spinning workers once a check every SPIN_SECONDS
    finds that no region has started since the one before. It waits on `wake` (set after each
    region) while they are parked, and ends when the pool is replaced."""
    seen = None
    while True:
        wake.wait()
        time.sleep(SPIN_SECONDS)
        if _state["pool"] is not pool:
            return
        if _state["regions"] != seen:
            seen = _state["regions"]
            continue
        _state["parking"] = True  # a region starting now waits the few µs (see parallel_for)
        if not _busy.acquire(blocking=False):  # a region is running after all
            _state["parking"] = False
            continue
        try:
            if _state["pool"] is pool and _state["regions"] == seen:
                for worker in pool:
                    worker.park()
                wake.clear()
        finally:
            _busy.release()
            _state["parking"] = False


def _spin_locks():
    """The spin locks for a new pool, or None (its workers only block): none where the C library
    has none, with $CONVLAB_SPIN=0, or with more threads than CPUs (a spinning thread must not
    take a core from one that has work)."""
    if _state["spin"] is None:
        raw = os.environ.get("CONVLAB_SPIN", "").strip()
        if raw not in ("", "0", "1"):
            raise ValueError(f"CONVLAB_SPIN must be 0 (workers block between regions) or 1 (they spin "
                             f"a few ms first, the default), got {raw!r}")
        _state["spin"] = (raw != "0" and _SpinLocks.load()) or False
    spin = _state["spin"]
    return spin if spin and num_threads() <= _cpus() else None


def _workers():
    with _lock:
        if _state["pool"] is None:
            spin = _spin_locks()
            pool = [_Worker(i, spin) for i in range(1, num_threads())]
            _state["pool"] = pool
            if spin is not None:
                _state["wake"] = threading.Event()
                threading.Thread(target=_watch, args=(pool, _state["wake"]), name="convlab-watcher",
                                 daemon=True).start()
        return _state["pool"]


def _after_fork_in_child():
    """A forked child has none of the parent's threads: start a fresh pool when it needs one."""
    global _busy, _lock
    _busy, _lock = threading.Lock(), threading.Lock()
    _state.update(pool=None, wake=None, parking=False)


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

    if not _busy.acquire(blocking=False) and not (_state["parking"] and _busy.acquire()):
        # Another thread's region has the workers (say, a GUI probe during training): run here,
        # each chunk under its own t, so per-thread sums come out the same. (The watcher, parking
        # them, holds them for microseconds: that is waited for.)
        return here(range(t_count))
    try:
        workers = _workers()
        _state["regions"] += 1
        for t in range(1, t_count):
            workers[t - 1].start(lambda t=t: run(t))
        error, mine = None, None
        try:
            mine = here([0])[0]
        except BaseException as exc:
            error = exc
        outcomes = [workers[t - 1].wait() for t in range(1, t_count)]  # wait for all before raising
        wake = _state["wake"]
        if wake is not None and not wake.is_set():
            wake.set()  # the workers spin now: the watcher times them
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
