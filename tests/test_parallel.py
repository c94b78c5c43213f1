"""convlab.parallel: the thread count and where it comes from, chunking, parallel_for's thread
assignment, nesting and error handling, how workers wait (spinning, then parked), per-thread
sums, grain_for and elementwise. Every test runs twice: with workers that spin between regions
and with workers that only block."""

import os
import re
import sys
import threading
import time

import numpy as np
import pytest

from convlab import parallel


@pytest.fixture(autouse=True)
def restore_threads():
    saved = parallel.num_threads()
    yield
    parallel.set_num_threads(saved)


_SPIN = parallel._SpinLocks.load()


def _use_spin(spin):
    """Stop the pool and give the next one these spin locks (None: decide again from the env)."""
    with parallel._busy, parallel._lock:
        parallel._stop_pool()
        parallel._state["spin"] = spin


@pytest.fixture(autouse=True, params=["spin", "block"])
def wait_mode(request):
    if request.param == "spin" and _SPIN is None:
        pytest.skip("this C library has no pthread spin locks")
    _use_spin(_SPIN if request.param == "spin" else False)
    yield request.param
    _use_spin(None)


# -- the thread count --------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -1, 1.5, True, False, "2", None, np.float64(2.0)], ids=repr)
def test_set_num_threads_rejects_anything_but_a_positive_int(bad):
    before = parallel.num_threads()
    with pytest.raises(ValueError, match=r"^the thread count must be a positive integer, got ") as info:
        parallel.set_num_threads(bad)
    assert str(info.value).endswith(repr(bad))
    assert parallel.num_threads() == before


def test_set_num_threads_accepts_numpy_integers():
    parallel.set_num_threads(np.int64(3))
    assert parallel.num_threads() == 3
    assert type(parallel.num_threads()) is int
    parallel.set_num_threads(1)
    assert parallel.num_threads() == 1


@pytest.fixture
def unset_threads(monkeypatch):
    """Neither variable set and no count chosen yet, so num_threads() reads the environment."""
    monkeypatch.delenv("CONVLAB_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    saved = dict(parallel._state)
    parallel._state["threads"] = None
    yield monkeypatch
    # restore_threads (set up before this fixture) calls set_num_threads afterwards
    if parallel._state["threads"] is None:
        parallel._state["threads"] = saved["threads"]


@pytest.mark.parametrize("var", ["CONVLAB_NUM_THREADS", "OMP_NUM_THREADS"])
@pytest.mark.parametrize("raw", ["abc", "0", "-2", "1.5", "2 threads"])
def test_env_thread_count_must_be_a_positive_integer(unset_threads, var, raw):
    unset_threads.setenv(var, raw)
    with pytest.raises(ValueError, match=f"^{var} must be a positive integer, got {re.escape(repr(raw))}$"):
        parallel.num_threads()
    assert parallel._state["threads"] is None  # nothing was set: the next call reads it again


@pytest.mark.parametrize("convlab, omp, expected", [
    ("3", None, 3),
    (None, "2", 2),
    (" 4 ", None, 4),  # surrounding blanks are ignored
    ("3", "not a number", 3),  # CONVLAB_NUM_THREADS wins; OMP_NUM_THREADS is not even read
    ("", "2", 2),  # an empty variable counts as unset
    ("   ", "5", 5),
])
def test_env_thread_count_precedence(unset_threads, convlab, omp, expected):
    if convlab is not None:
        unset_threads.setenv("CONVLAB_NUM_THREADS", convlab)
    if omp is not None:
        unset_threads.setenv("OMP_NUM_THREADS", omp)
    assert parallel.num_threads() == expected
    assert parallel._state["threads"] == expected


def test_env_thread_count_error_from_omp_when_convlab_is_empty(unset_threads):
    unset_threads.setenv("CONVLAB_NUM_THREADS", "")
    unset_threads.setenv("OMP_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="^OMP_NUM_THREADS must be a positive integer, got 'zero'$"):
        parallel.num_threads()


def test_without_env_the_thread_count_is_the_usable_cpus(unset_threads):
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    assert parallel.num_threads() == expected


def test_env_is_read_only_while_no_count_is_set(unset_threads):
    parallel.set_num_threads(2)
    unset_threads.setenv("CONVLAB_NUM_THREADS", "garbage")
    assert parallel.num_threads() == 2


# -- chunks ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, grain", [(0, 3), (1, 1), (1, 5), (10, 1), (10, 3), (10, 5), (10, 10), (10, 11),
                                      (7, 0), (7, -2), (257, 32)])
def test_chunks_cover_the_range_exactly_once(n, grain):
    parts = parallel.chunks(n, grain)
    covered = [i for s, e in parts for i in range(s, e)]
    assert covered == list(range(n))
    g = max(grain, 1)
    assert all(e - s == g for s, e in parts[:-1])
    assert all(0 < e - s <= g for s, e in parts)
    assert len(parts) == -(-n // g)


# -- parallel_for ------------------------------------------------------------------------------
def record(s, e, t):
    return (s, e, t, threading.get_ident())


@pytest.mark.parametrize("threads, n, grain", [(2, 11, 2), (2, 5, 1), (3, 10, 3), (3, 7, 1), (2, 2, 1)])
def test_parallel_for_runs_chunk_k_on_thread_k_mod_T(threads, n, grain):
    parallel.set_num_threads(threads)
    parts = parallel.chunks(n, grain)
    t_count = min(threads, len(parts))
    result = parallel.parallel_for(n, grain, record)
    assert len(result) == t_count
    for t, per_thread in enumerate(result):
        # each thread's results, in chunk order: chunks t, t + T, t + 2T, ...
        assert [(s, e) for s, e, _, _ in per_thread] == parts[t::t_count]
        assert all(rt == t for _, _, rt, _ in per_thread)
        assert len({ident for *_, ident in per_thread}) == 1  # a thread's chunks run on one thread
    assert {ident for *_, ident in result[0]} == {threading.get_ident()}  # the caller is thread 0
    for per_thread in result[1:]:
        assert per_thread[0][3] != threading.get_ident()
    assert sorted((s, e) for per_thread in result for s, e, _, _ in per_thread) == parts


def test_parallel_for_with_more_threads_than_chunks_uses_one_thread_per_chunk():
    parallel.set_num_threads(3)
    result = parallel.parallel_for(4, 2, record)
    assert [[(s, e, t) for s, e, t, _ in r] for r in result] == [[(0, 2, 0)], [(2, 4, 1)]]


@pytest.mark.parametrize("threads, n, grain", [(1, 10, 3), (2, 10, 10), (2, 10, 50), (3, 1, 1)])
def test_parallel_for_runs_inline_with_one_thread_or_one_chunk(threads, n, grain):
    parallel.set_num_threads(threads)
    result = parallel.parallel_for(n, grain, record)
    assert len(result) == 1
    assert [(s, e, t) for s, e, t, _ in result[0]] == [(s, e, 0) for s, e in parallel.chunks(n, grain)]
    assert {ident for *_, ident in result[0]} == {threading.get_ident()}


def test_parallel_for_with_nothing_to_do():
    parallel.set_num_threads(2)
    assert parallel.parallel_for(0, 4, record) == [[]]


def test_parallel_for_runs_a_non_numpy_module_as_one_chunk():
    parallel.set_num_threads(2)
    result = parallel.parallel_for(10, 3, record, xp=object())
    assert [(s, e, t) for s, e, t, _ in result[0]] == [(0, 10, 0)]
    assert len(result) == 1


def test_nested_parallel_for_runs_inline_in_the_calling_chunk():
    parallel.set_num_threads(2)

    def outer(s, e, t):
        inner = parallel.parallel_for(6, 1, record)
        return t, threading.get_ident(), inner

    result = parallel.parallel_for(4, 1, outer)
    assert len(result) == 2
    for t, per_thread in enumerate(result):
        assert len(per_thread) == 2
        for outer_t, ident, inner in per_thread:
            assert outer_t == t
            assert len(inner) == 1  # one thread: inline
            assert [(s, e, it) for s, e, it, _ in inner[0]] == [(k, k + 1, 0) for k in range(6)]
            assert {i for *_, i in inner[0]} == {ident}  # on the outer chunk's own thread
    # and afterwards parallel_for is parallel again, on the caller and the workers
    again = parallel.parallel_for(4, 1, record)
    assert len(again) == 2


def test_an_exception_in_a_worker_chunk_reaches_the_caller():
    parallel.set_num_threads(2)

    def body(s, e, t):
        if s == 3:  # chunk 3 runs on thread 1
            raise KeyError(f"chunk {s} failed")
        return s

    with pytest.raises(KeyError, match="chunk 3 failed"):
        parallel.parallel_for(6, 1, body)
    # the pool and both threads still work, and no thread is left marked as inside a chunk
    result = parallel.parallel_for(6, 1, record)
    assert [[t for _, _, t, _ in r] for r in result] == [[0, 0, 0], [1, 1, 1]]


def test_an_exception_on_the_caller_waits_for_the_other_threads():
    parallel.set_num_threads(2)
    done = []

    def body(s, e, t):
        if t == 0:
            raise RuntimeError("caller's chunk failed")
        time.sleep(0.05)
        done.append(s)

    with pytest.raises(RuntimeError, match="caller's chunk failed"):
        parallel.parallel_for(4, 1, body)
    assert sorted(done) == [1, 3]  # thread 1 finished its chunks before the error was raised
    result = parallel.parallel_for(4, 1, record)
    assert len(result) == 2


def test_two_callers_at_once_both_get_every_chunk_under_its_own_t():
    """A second thread's region (a GUI probe during training, say) runs while the first holds the
    workers: it runs on its own thread, still handing chunk k to t = k mod T."""
    parallel.set_num_threads(2)
    start = threading.Barrier(2)
    results, errors = {}, []

    def caller(name):
        try:
            start.wait()
            out = []
            for _ in range(200):
                out.append(parallel.parallel_for(6, 1, lambda s, e, t: (s, t)))
            results[name] = out
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(name,)) for name in "ab"]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors and all(not th.is_alive() for th in threads)
    for out in results.values():
        assert len(out) == 200
        assert all(r == [[(0, 0), (2, 0), (4, 0)], [(1, 1), (3, 1), (5, 1)]] for r in out)


def test_changing_the_thread_count_stops_the_old_workers():
    parallel.set_num_threads(3)
    parallel.parallel_for(6, 1, record)
    old = [w.thread for w in parallel._state["pool"]]
    assert len(old) == 2 and all(th.is_alive() for th in old)
    parallel.set_num_threads(2)
    assert all(not th.is_alive() for th in old)
    result = parallel.parallel_for(6, 1, record)
    assert [[t for _, _, t, _ in r] for r in result] == [[0, 0, 0], [1, 1, 1]]


def test_set_num_threads_inside_a_chunk_is_refused_not_a_deadlock():
    parallel.set_num_threads(2)

    def body(s, e, t):
        parallel.set_num_threads(1)

    with pytest.raises(RuntimeError, match="inside a parallel_for chunk"):
        parallel.parallel_for(4, 1, body)
    assert parallel.num_threads() == 2
    assert len(parallel.parallel_for(4, 1, record)) == 2


# -- Sums --------------------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_sums_total_equals_the_plain_sum(threads):
    parallel.set_num_threads(threads)
    rng = np.random.default_rng(0)
    a = rng.integers(-50, 50, size=(23, 4)).astype(np.float64)  # integers: every order sums exactly
    b = rng.integers(-50, 50, size=(23,)).astype(np.float64)
    sums = parallel.Sums()
    parallel.parallel_for(23, 2, lambda s, e, t: sums.add(t, a[s:e].sum(axis=0), b[s:e].sum(), None))
    total_a, total_b, nothing = sums.total()
    np.testing.assert_array_equal(total_a, a.sum(axis=0))
    assert total_b == b.sum()
    assert nothing is None


def test_sums_add_per_thread_then_in_thread_order():
    sums = parallel.Sums()
    # inserted out of order; thread order 0, 1, 2 gives (1 + 1e16) - 1e16 = 0 in float64, while
    # any order that adds the two big terms first would give 1
    sums.add(2, np.array([-1e16]))
    sums.add(1, np.array([1e16]))
    sums.add(0, np.array([0.5]))
    sums.add(0, np.array([0.5]))
    (total,) = sums.total()
    assert total[0] == 0.0


def test_sums_are_reproducible_for_a_thread_count():
    parallel.set_num_threads(2)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((40, 8))

    def run():
        sums = parallel.Sums()
        parallel.parallel_for(40, 3, lambda s, e, t: sums.add(t, a[s:e].sum(axis=0)))
        return sums.total()[0]

    first = run()
    np.testing.assert_array_equal(run(), first)
    np.testing.assert_allclose(first, a.sum(axis=0), rtol=1e-12, atol=1e-12)


# -- grain_for ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n, bytes_per_item",
                         [(1, 1), (100, 100), (1000, 1000), (3, parallel._MIN_PARALLEL_BYTES // 3)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_grain_for_keeps_small_work_in_one_chunk(threads, n, bytes_per_item):
    parallel.set_num_threads(threads)
    assert n * bytes_per_item < parallel._MIN_PARALLEL_BYTES
    assert parallel.grain_for(n, bytes_per_item) == n


def test_grain_for_splits_at_the_minimum_work():
    parallel.set_num_threads(2)
    n = 4
    bytes_per_item = parallel._MIN_PARALLEL_BYTES // n  # exactly the minimum: worth splitting
    assert parallel.grain_for(n, bytes_per_item) < n



# (threads, n, bytes per item); all at or above the minimum work, and n >= threads
GRAIN_COMBOS = [
    (2, 8, 1 << 20), (2, 10, 600_000), (2, 16, 300_000), (2, 64, 1 << 18), (2, 100, 50_000),
    (2, 256, 720_896), (2, 257, 1 << 16), (2, 1000, 4096), (2, 33, 1 << 17),
    (3, 16, 300_000), (3, 100, 50_000), (3, 256, 1 << 16), (3, 257, 1 << 16), (3, 1000, 4096),
    (3, 33, 1 << 17), (3, 12, 400_000),
    pytest.param(2, 5, 800_000),
    pytest.param(2, 3, 1_572_864),
    pytest.param(3, 8, 1 << 20),
    pytest.param(3, 10, 600_000),
    pytest.param(3, 64, 1 << 18),
    pytest.param(3, 256, 720_896),
]


@pytest.mark.parametrize("threads, n, bytes_per_item", GRAIN_COMBOS)
def test_grain_for_gives_every_thread_the_same_number_of_chunks(threads, n, bytes_per_item):
    parallel.set_num_threads(threads)
    assert n * bytes_per_item >= parallel._MIN_PARALLEL_BYTES and n >= threads
    grain = parallel.grain_for(n, bytes_per_item)
    assert 1 <= grain <= n
    count = len(parallel.chunks(n, grain))
    assert count % threads == 0, f"grain {grain}: {count} chunks for {threads} threads"


@pytest.mark.parametrize("n, bytes_per_item, target", [(64, 1 << 18, 1 << 21), (1000, 4096, 1 << 21),
                                                       (200, 1 << 16, 1 << 22)])
def test_grain_for_keeps_chunks_near_the_target_size(n, bytes_per_item, target):
    parallel.set_num_threads(1)
    grain = parallel.grain_for(n, bytes_per_item, target)
    most = target // bytes_per_item
    assert grain <= most  # no chunk over the target...
    assert len(parallel.chunks(n, grain)) == -(-n // most)  # ...and no more chunks than that needs


def test_grain_for_items_larger_than_the_target_go_one_per_chunk():
    parallel.set_num_threads(1)
    assert parallel.grain_for(4, 3 << 20) == 1


# -- dense_flat and elementwise ----------------------------------------------------------------
def channels_last(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def test_dense_flat_is_a_view_in_memory_order():
    a = channels_last(np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5))
    flat = parallel.dense_flat(a)
    assert flat.ndim == 1 and np.shares_memory(flat, a)
    np.testing.assert_array_equal(flat, a.transpose(0, 2, 3, 1).reshape(-1))
    assert parallel.dense_flat(a[:, :, ::2]) is None


@pytest.mark.parametrize("layout", ["NCHW", "channels-last"])
def test_elementwise_on_dense_arrays_runs_one_chunk_per_thread(layout, monkeypatch):
    parallel.set_num_threads(2)
    monkeypatch.setattr(parallel, "_MIN_PARALLEL_BYTES", 0)
    rng = np.random.default_rng(0)
    shape = (3, 5, 4, 7)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    out = np.full(shape, np.nan)
    if layout == "channels-last":
        a, b, out = channels_last(a), channels_last(b), channels_last(out)
    calls = []

    def fn(o, x, y):
        calls.append((o.size, threading.get_ident()))
        np.multiply(x, y, out=o)
        o += x

    assert parallel.elementwise(fn, out, a, b) is True
    np.testing.assert_array_equal(out, a * b + a)
    assert out.transpose(0, 2, 3, 1).flags.c_contiguous == (layout == "channels-last")
    size = a.size
    assert sorted(s for s, _ in calls) == sorted([-(-size // 2), size - -(-size // 2)])
    assert len({ident for _, ident in calls}) == 2


def test_elementwise_small_arrays_run_as_one_chunk():
    parallel.set_num_threads(2)
    a = channels_last(np.ones((2, 3, 4, 4)))
    out = np.empty_like(a)
    calls = []
    assert parallel.elementwise(lambda o, x: (calls.append(o.size), np.negative(x, out=o)), out, a) is True
    assert calls == [a.size]
    np.testing.assert_array_equal(out, -a)


@pytest.mark.parametrize("case", ["mixed layouts", "not dense", "shape differs"])
def test_elementwise_declines_arrays_without_one_shared_dense_layout(case):
    rng = np.random.default_rng(0)
    a = channels_last(rng.standard_normal((2, 3, 4, 6)))
    out = channels_last(np.full(a.shape, 7.0))
    if case == "mixed layouts":
        inputs = (np.ascontiguousarray(a),)
    elif case == "not dense":
        out, inputs = out[..., ::2], (a[..., ::2],)
    else:
        inputs = (a[:1],)
    calls = []
    assert parallel.elementwise(lambda *arrays: calls.append(1), out, *inputs) is False
    assert calls == []
    assert np.all(out == 7.0)


# -- how workers wait between regions ----------------------------------------------------------
def _cpu_seconds(thread):
    """CPU time a thread has used so far (Linux: /proc, in clock ticks of 10 ms)."""
    with open(f"/proc/self/task/{thread.native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _watchers():
    return {th for th in threading.enumerate() if th.name == "convlab-watcher"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread CPU time from /proc")
def test_between_regions_a_worker_spins_a_while_then_parks(wait_mode, monkeypatch):
    monkeypatch.setattr(parallel, "SPIN_SECONDS", 0.1)  # parked 0.1-0.2 s after the last region
    parallel.set_num_threads(2)
    parallel.parallel_for(4, 1, record)
    worker = parallel._state["pool"][0]
    before = _cpu_seconds(worker.thread)
    time.sleep(0.08)
    used = _cpu_seconds(worker.thread) - before
    if wait_mode == "block":
        assert not worker.spinning and used <= 0.02
    else:
        assert worker.spinning and used >= 0.02  # on its CPU most of the 80 ms, not asleep
    deadline = time.monotonic() + 5
    while worker.spinning and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not worker.spinning
    before = _cpu_seconds(worker.thread)
    time.sleep(0.1)
    assert _cpu_seconds(worker.thread) - before <= 0.02  # parked: blocked, no CPU
    # the next region wakes it, chunk k still on thread k mod T, and it spins again after
    result = parallel.parallel_for(6, 1, record)
    assert [[t for _, _, t, _ in r] for r in result] == [[0, 0, 0], [1, 1, 1]]
    assert worker.spinning == (wait_mode == "spin")


def test_regions_back_to_back_and_after_parking_get_every_chunk_once(wait_mode, monkeypatch):
    monkeypatch.setattr(parallel, "SPIN_SECONDS", 0.002)
    parallel.set_num_threads(2)
    for i in range(300):
        if i % 50 == 0:
            time.sleep(0.01)  # long enough for the watcher to park the worker
        result = parallel.parallel_for(4, 1, lambda s, e, t: (s, t, threading.get_ident()))
        assert [[(s, t) for s, t, _ in r] for r in result] == [[(0, 0), (2, 0)], [(1, 1), (3, 1)]]
        assert result[0][0][2] != result[1][0][2]


@pytest.mark.parametrize("raw, spins", [("0", False), ("1", True), ("", True), (" 1 ", True)])
def test_convlab_spin_env_chooses_how_workers_wait(monkeypatch, raw, spins):
    monkeypatch.setenv("CONVLAB_SPIN", raw)
    _use_spin(None)
    parallel.set_num_threads(2)
    parallel.parallel_for(4, 1, record)
    assert parallel._state["pool"][0].spinning == (spins and _SPIN is not None)


def test_convlab_spin_env_rejects_other_values(monkeypatch):
    monkeypatch.setenv("CONVLAB_SPIN", "yes")
    _use_spin(None)
    parallel.set_num_threads(2)
    with pytest.raises(ValueError, match=r"CONVLAB_SPIN must be 0 .* or 1 .*got 'yes'"):
        parallel.parallel_for(4, 1, record)


def test_with_more_threads_than_cpus_workers_never_spin():
    parallel.set_num_threads(parallel._cpus() + 1)
    before = _watchers()
    result = parallel.parallel_for(12, 1, record)
    assert len(result) == parallel._cpus() + 1
    assert not any(w.spinning for w in parallel._state["pool"])
    assert _watchers() <= before  # and no watcher: nothing to park


def test_replacing_a_pool_ends_its_workers_and_its_watcher(wait_mode, monkeypatch):
    monkeypatch.setattr(parallel, "SPIN_SECONDS", 0.01)
    parallel.set_num_threads(2)
    before = _watchers()
    parallel.parallel_for(4, 1, record)
    workers = [w.thread for w in parallel._state["pool"]]
    watcher = _watchers() - before
    assert len(watcher) == (1 if wait_mode == "spin" else 0)
    parallel.set_num_threads(1)
    assert not any(th.is_alive() for th in workers)
    for th in watcher:
        th.join(timeout=5)
        assert not th.is_alive()
    assert parallel.parallel_for(4, 1, record) == [[(0, 1, 0, threading.get_ident()), (1, 2, 0, threading.get_ident()),
                                                    (2, 3, 0, threading.get_ident()), (3, 4, 0, threading.get_ident())]]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_a_pool_of_its_own(wait_mode):
    parallel.set_num_threads(2)
    parallel.parallel_for(4, 1, record)  # the parent's workers are up (spinning, in spin mode)
    pid = os.fork()
    if pid == 0:  # the child: none of the parent's threads exist here
        code = 3
        try:
            result = parallel.parallel_for(4, 1, lambda s, e, t: (s, t))
            code = 0 if result == [[(0, 0), (2, 0)], [(1, 1), (3, 1)]] else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if not done:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert done and os.waitstatus_to_exitcode(status) == 0
    assert len(parallel.parallel_for(4, 1, record)) == 2  # and the parent's pool still works


def test_without_spin_locks_in_the_c_library_workers_only_block(monkeypatch):
    import ctypes

    class NoSpinLocks:  # a C library without pthread_spin_* (macOS)
        def __init__(self, name):
            pass

    monkeypatch.setattr(ctypes, "CDLL", NoSpinLocks)
    assert parallel._SpinLocks.load() is None
    _use_spin(None)
    parallel.set_num_threads(2)
    result = parallel.parallel_for(4, 1, lambda s, e, t: (s, t))
    assert result == [[(0, 0), (2, 0)], [(1, 1), (3, 1)]]
    assert parallel._state["spin"] is False and not parallel._state["pool"][0].spinning


def test_set_spin_chooses_how_the_next_pool_waits(monkeypatch):
    monkeypatch.delenv("CONVLAB_SPIN", raising=False)
    parallel.set_num_threads(2)
    for enabled, spins in ((False, False), (True, _SPIN is not None), (None, _SPIN is not None), (False, False)):
        parallel.parallel_for(4, 1, record)
        old = parallel._state["pool"][0]
        parallel.set_spin(enabled)
        assert not old.thread.is_alive()  # the pool that waited the other way is gone
        result = parallel.parallel_for(4, 1, lambda s, e, t: (s, t))
        assert result == [[(0, 0), (2, 0)], [(1, 1), (3, 1)]]
        assert parallel._state["pool"][0].spinning == spins


@pytest.mark.parametrize("bad", [0, 1, "no", 0.0])
def test_set_spin_rejects_anything_but_a_bool_or_none(bad):
    with pytest.raises(ValueError, match=r"set_spin takes True, False or None, got"):
        parallel.set_spin(bad)


def test_set_spin_inside_a_chunk_is_refused_not_a_deadlock():
    parallel.set_num_threads(2)

    def body(s, e, t):
        parallel.set_spin(False)

    with pytest.raises(RuntimeError, match="set_spin was called from inside a parallel_for chunk"):
        parallel.parallel_for(4, 1, body)
    assert len(parallel.parallel_for(4, 1, record)) == 2
