"""The CPU fast paths of conv2d, max pooling and batch norm: each code path against PyTorch in float64,
and each path split over two threads in uneven one-image chunks against the single-thread run.

conv2d picks its path from the shapes (see `convlab.functional.conv`); every case below names the
forward path and the input-gradient path it must take, and the tests assert that it does (through
the module's own predicates and by watching which helpers run), so a case that stops exercising
its path fails instead of silently testing another one.
"""

from dataclasses import dataclass

import numpy as np
import pytest

from convlab import parallel
from convlab.functional import conv, norm, pool, workspace
from tests.gradcheck import check_op

RTOL64 = 1e-10  # float64 against PyTorch
RTOL_THREADS = 1e-12  # float64, two threads in small chunks against one thread
RTOL32 = 1e-4  # float32 against float64


@pytest.fixture(autouse=True)
def restore_threads():
    saved = parallel.num_threads()
    yield
    parallel.set_num_threads(saved)


def torch_or_skip():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def channels_last(a):
    """The same values as `a` (N, C, H, W), stored channels-last (as conv outputs are)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def assert_close(actual, expected, rtol, what=""):
    """Elementwise rtol, with an absolute floor of rtol·max|expected| for entries that cancel to ~0."""
    assert actual is not None, f"{what}: got None"
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


class Spy:
    """Wraps parallel_for inside a module and records every chunk (start, stop, thread)."""

    def __init__(self, monkeypatch, module):
        self.calls = []
        real = parallel.parallel_for

        def spy(n, grain, body, xp=np):
            def recorded(s, e, t):
                self.calls.append((s, e, t))
                return body(s, e, t)

            return real(n, grain, recorded, xp)

        monkeypatch.setattr(module, "parallel_for", spy)

    def assert_used_threads(self):
        assert self.calls, "parallel_for was never called"
        assert {t for _, _, t in self.calls} == {0, 1}, f"chunks did not run on both threads: {self.calls}"


# -- conv2d ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvCase:
    x_shape: tuple
    out_channels: int
    kernel: object
    forward: str  # pointwise | planar | depthwise | rows | im2col
    dx: str  # pointwise | flip (full correlation with the flipped kernel) | offset | depthwise flip | depthwise
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    channels_last: bool = False
    bias: bool = True


CONV_CASES = {
    "planar C=1 5x5 pad 2": ConvCase((5, 1, 12, 12), 6, 5, "planar", "flip", padding=2),
    "planar C=1 LeNet size (thin GEMMs in row blocks)": ConvCase((5, 1, 28, 28), 6, 5, "planar", "flip", padding=2),
    "planar C=3 3x3 pad 1 NCHW": ConvCase((5, 3, 9, 11), 8, 3, "planar", "flip", padding=1),
    "planar channels-last C=1": ConvCase((5, 1, 9, 11), 8, 3, "planar", "flip", padding=1, channels_last=True),
    "planar C=3 stride 2, dx per offset": ConvCase((5, 3, 9, 11), 8, 3, "planar", "offset", stride=2, padding=1),
    "planar C=1 pad 3, dx per offset": ConvCase((5, 1, 7, 8), 4, 3, "planar", "offset", padding=3, bias=False),
    "rows C=16 O=16 3x3 pad 1": ConvCase((5, 16, 8, 9), 16, 3, "rows", "flip", padding=1),
    "rows unpadded 5x5 channels-last (LeNet's second layer)": ConvCase((5, 6, 14, 14), 16, 5, "rows", "flip",
                                                                       channels_last=True),
    "rows unpadded NCHW (strided views of a non-contiguous input)": ConvCase((5, 6, 10, 11), 16, 3, "rows", "flip"),
    "rows dilation 2": ConvCase((5, 16, 9, 8), 16, 3, "rows", "flip", padding=2, dilation=2),
    "rows stride (1, 2)": ConvCase((5, 16, 8, 9), 16, 3, "rows", "offset", stride=(1, 2), padding=1),
    "rows kernel (3, 5) same": ConvCase((5, 16, 7, 9), 16, (3, 5), "rows", "flip", padding="same"),
    "rows kernel (2, 4) asymmetric same": ConvCase((5, 16, 7, 9), 12, (2, 4), "rows", "flip", padding="same"),
    "rows channels-last C=3": ConvCase((5, 3, 9, 11), 8, 3, "rows", "flip", padding=1, channels_last=True),
    "rows at its limits C=64 O=64 (kw*C=192)": ConvCase((5, 64, 5, 6), 64, 3, "rows", "flip", padding=1,
                                                       channels_last=True),
    "rows pad 3 with 3x3, dx per offset": ConvCase((5, 16, 6, 7), 16, 3, "rows", "offset", padding=3),
    "im2col C=80 (kw*C > 192)": ConvCase((5, 80, 6, 7), 16, 3, "im2col", "flip", padding=1,
                                         channels_last=True),
    "im2col O=80": ConvCase((5, 16, 6, 7), 80, 3, "im2col", "flip", padding=1),
    "im2col stride 2, dx per offset": ConvCase((5, 16, 9, 8), 16, 3, "im2col", "offset", stride=2, padding=1),
    "im2col 1x1 stride 2": ConvCase((5, 16, 7, 8), 24, 1, "im2col", "offset", stride=2, channels_last=True),
    "pointwise 1x1": ConvCase((5, 16, 6, 7), 24, 1, "pointwise", "pointwise"),
    "pointwise 1x1 channels-last": ConvCase((5, 16, 6, 7), 24, 1, "pointwise", "pointwise", channels_last=True),
    "pointwise 1x1 C=3 NCHW (planar-shaped, pointwise wins)": ConvCase((5, 3, 6, 7), 8, 1, "pointwise", "pointwise"),
    "depthwise 3x3": ConvCase((5, 8, 8, 9), 8, 3, "depthwise", "depthwise flip", padding=1, groups=8,
                              channels_last=True),
    "depthwise 5x5 dilation 2 same": ConvCase((5, 8, 9, 10), 8, 5, "depthwise", "depthwise flip", padding="same",
                                              dilation=2, groups=8, channels_last=True),
    "depthwise (2, 4) asymmetric same": ConvCase((5, 8, 7, 9), 8, (2, 4), "depthwise", "depthwise flip",
                                                 padding="same", groups=8, bias=False),
    "depthwise pad 3 with 3x3, dx per offset": ConvCase((5, 8, 6, 7), 8, 3, "depthwise", "depthwise", padding=3,
                                                        groups=8, channels_last=True),
    "depthwise stride 2 dilation 2": ConvCase((5, 8, 9, 8), 8, 3, "depthwise", "depthwise", stride=2, padding=2,
                                              dilation=2, groups=8, bias=False),
    "groups 2": ConvCase((5, 8, 7, 8), 12, 3, "im2col", "offset", padding=1, groups=2, channels_last=True),
    "groups 4, multiplier 2 (not depthwise)": ConvCase((5, 4, 7, 6), 8, 3, "im2col", "offset", padding=1, groups=4),
}


def _kernel(case):
    return (case.kernel, case.kernel) if isinstance(case.kernel, int) else tuple(case.kernel)


def conv_inputs(case, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case.x_shape)
    if case.channels_last:
        x = channels_last(x)
    kh, kw = _kernel(case)
    w = rng.standard_normal((case.out_channels, case.x_shape[1] // case.groups, kh, kw))
    b = rng.standard_normal(case.out_channels) if case.bias else None
    return x, w, b


def conv_paths(case, x, w):
    """(forward path, dx path) that conv2d / conv2d_backward take, from the module's own predicates."""
    stride, dilation = conv._pair(case.stride, "stride"), conv._pair(case.dilation, "dilation")
    pads, _, _ = conv._geometry(x.shape, w.shape, stride, case.padding, dilation)
    pointwise = conv._is_pointwise(w.shape, pads, stride, case.groups)
    depthwise = conv._is_depthwise(x.shape, w.shape, case.groups)
    if pointwise:
        fwd = "pointwise"
    elif conv._planar(x, w, case.groups):
        fwd = "planar"
    elif depthwise:
        fwd = "depthwise"
    elif conv._by_rows(case.groups, stride, False, w.shape):
        fwd = "rows"
    else:
        fwd = "im2col"
    kh, kw = w.shape[2:]
    t_pads = ((kh - 1) * dilation[0] - pads[0], (kh - 1) * dilation[0] - pads[1],
              (kw - 1) * dilation[1] - pads[2], (kw - 1) * dilation[1] - pads[3])
    correlation = stride == (1, 1) and min(t_pads) >= 0
    if pointwise:
        dx = "pointwise"
    elif depthwise:
        dx = "depthwise flip" if correlation else "depthwise"
    elif case.groups == 1 and correlation:
        dx = "flip"
    else:
        dx = "offset"
    return fwd, dx


def run_conv(case, x, w, b, dy_layout="channels_last", seed=1, need_dx=True):
    y, cache = conv.conv2d(x, w, b, case.stride, case.padding, case.dilation, case.groups)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype)
    if dy_layout == "channels_last":
        dy = channels_last(dy)
    dx, dw, db = conv.conv2d_backward(dy, cache, need_dx=need_dx)
    return y, dx, dw, db, dy


def torch_same_pads(kernel, dilation):
    """PyTorch's padding='same' split: (left, right) per axis, the odd extra cell on the right/bottom."""
    kh, kw = kernel
    dh, dw = dilation
    th, tw = dh * (kh - 1), dw * (kw - 1)
    return (tw // 2, tw - tw // 2, th // 2, th - th // 2)  # TF.pad order: left, right, top, bottom


def torch_conv(case, x, w, b, dy):
    torch = torch_or_skip()
    TF = torch.nn.functional
    xt = torch.tensor(np.ascontiguousarray(x), dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    bt = None if b is None else torch.tensor(b, dtype=torch.float64, requires_grad=True)
    stride, dilation = conv._pair(case.stride, "stride"), conv._pair(case.dilation, "dilation")
    inp, padding = xt, case.padding
    if padding == "same":  # explicit zero padding: TF.conv2d warns on even kernels with "same"
        inp, padding = TF.pad(xt, torch_same_pads(_kernel(case), dilation)), 0
    yt = TF.conv2d(inp, wt, bt, stride, padding, dilation, case.groups)
    yt.backward(torch.tensor(np.ascontiguousarray(dy), dtype=torch.float64))
    return (yt.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), None if bt is None else bt.grad.numpy())


def watch_conv_helpers(monkeypatch):
    """Record which of conv's helpers run (and the scratch slots _pad_nhwc fills)."""
    seen = []

    def wrap(name):
        real = getattr(conv, name)

        def spy(*args, **kwargs):
            seen.append(name if name != "_pad_nhwc" else f"_pad_nhwc:{args[3] if len(args) > 3 else 'pad'}")
            return real(*args, **kwargs)

        monkeypatch.setattr(conv, name, spy)

    for name in ("im2col", "im2col_planar", "row_expand", "_pad_nhwc"):
        wrap(name)
    return seen


FORWARD_HELPER = {"planar": "im2col_planar", "rows": "row_expand", "im2col": "im2col"}


@pytest.mark.parametrize("name", CONV_CASES)
def test_conv2d_path_matches_torch(name, monkeypatch):
    case = CONV_CASES[name]
    x, w, b = conv_inputs(case)
    assert conv_paths(case, x, w) == (case.forward, case.dx)
    if name == "rows kernel (2, 4) asymmetric same":
        pads = conv.resolve_padding("same", _kernel(case), (1, 1), (1, 1))
        assert pads[0] != pads[1] and pads[2] != pads[3], pads
    parallel.set_num_threads(1)
    seen = watch_conv_helpers(monkeypatch)

    y, cache = conv.conv2d(x, w, b, case.stride, case.padding, case.dilation, case.groups)
    forward_helpers = {s for s in seen if not s.startswith("_pad_nhwc")}
    expected = FORWARD_HELPER.get(case.forward)
    assert forward_helpers == ({expected} if expected else set()), seen
    assert y.transpose(0, 2, 3, 1).flags.c_contiguous  # channels-last memory

    rng = np.random.default_rng(1)
    dy_values = rng.standard_normal(y.shape)
    ty, tdx, tdw, tdb = torch_conv(case, x, w, b, dy_values)
    assert_close(y, ty, RTOL64, f"{name}: forward")

    for layout, dy in (("NCHW", dy_values), ("channels-last", channels_last(dy_values))):
        del seen[:]
        dx, dw, db = conv.conv2d_backward(dy, cache)
        flipped = "_pad_nhwc:dypad" in seen
        assert flipped == (case.dx in ("flip", "depthwise flip")), seen
        assert dx.shape == x.shape and dw.shape == w.shape
        assert_close(dx, tdx, RTOL64, f"{name}: dx ({layout} dy)")
        assert_close(dw, tdw, RTOL64, f"{name}: dw ({layout} dy)")
        if b is None:
            assert db is None
        else:
            assert_close(db, tdb, RTOL64, f"{name}: db ({layout} dy)")

        no_dx, dw2, db2 = conv.conv2d_backward(dy, cache, need_dx=False)
        assert no_dx is None
        np.testing.assert_array_equal(dw2, dw)
        if b is None:
            assert db2 is None
        else:
            np.testing.assert_array_equal(db2, db)


@pytest.mark.parametrize("name", CONV_CASES)
def test_conv2d_reads_no_scratch_it_did_not_write(name, monkeypatch):
    """Scratch buffers come back uninitialised; some paths leave parts unwritten on purpose (the
    padding rows the row path skips). With every buffer full of NaN, any read of such a part
    would show up in the results."""
    case = CONV_CASES[name]
    x, w, b = conv_inputs(case)
    y, cache = conv.conv2d(x, w, b, case.stride, case.padding, case.dilation, case.groups)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    expected = conv.conv2d_backward(dy, cache)

    def poisoned(xp, shape, dtype, slot="default"):
        return xp.full(shape, np.nan, dtype=dtype)

    monkeypatch.setattr(conv, "scratch", poisoned)
    y2, cache2 = conv.conv2d(x, w, b, case.stride, case.padding, case.dilation, case.groups)
    np.testing.assert_array_equal(y2, y)
    for got, want in zip(conv.conv2d_backward(dy, cache2), expected):
        if want is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got, want)


def _bordered_buffers():
    return list(getattr(workspace._local, "bordered", {}).items())


def assert_kept_buffers_intact():
    """What callers never write in the kept buffers is as it was made: padding zero, the planar
    columns' row of ones all ones."""
    buffers = _bordered_buffers()
    for (slot, _, _, shape, border), buf in buffers:
        if slot == "planar cols":
            assert np.all(buf[-1] == 1), f"{slot} {shape}: the row of ones was written"
            continue
        pt, pb, pl, pr = border
        # NHWC buffers pad axes 1 and 2, the planar (N, C, H, W) one axes 2 and 3
        a = buf if slot == "planar" else buf.transpose(0, 3, 1, 2)
        outside = np.ones(a.shape[2:], bool)
        outside[pt:a.shape[2] - pb, pl:a.shape[3] - pr] = False
        assert not np.any(a[:, :, outside]), f"{slot} {shape}: the padding was written"
    return {key[0] for key, _ in buffers}


def test_padded_buffers_keep_a_zero_border_across_every_path():
    """Padded inputs (and the planar columns' row of ones) live in reused buffers that callers
    write only inside (`zero_bordered`). Run every case twice in one sequence, so each buffer is
    reused by later calls, and compare with runs that each start from fresh buffers; after each
    run, check every kept buffer is intact outside."""
    fresh = {}
    for name, case in CONV_CASES.items():
        workspace.release()
        fresh[name] = run_conv(case, *conv_inputs(case))
    workspace.release()
    slots = set()
    for _ in range(2):
        for name, case in CONV_CASES.items():
            for got, want in zip(run_conv(case, *conv_inputs(case)), fresh[name]):
                if want is None:
                    assert got is None
                else:
                    np.testing.assert_array_equal(got, want, err_msg=name)
            slots |= assert_kept_buffers_intact()
    # every kind of kept buffer was made and checked at some point
    assert slots == {"pad", "dypad", "planar", "planar cols"}


def test_same_padded_shape_with_other_pads_gets_its_own_buffer():
    """14x14 padded by 2 and 16x16 padded by 1 both make an 18x18 buffer; sharing one would put the
    second input's edge where the first expects zeros."""
    workspace.release()
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    xa = channels_last(rng.standard_normal((3, 4, 14, 14)).astype(np.float32))
    xb = channels_last(rng.standard_normal((3, 4, 16, 16)).astype(np.float32))
    ya, _ = conv.conv2d(xa, w, None, padding=2)
    conv.conv2d(xb, w, None, padding=1)
    ya2, _ = conv.conv2d(xa, w, None, padding=2)
    np.testing.assert_array_equal(ya2, ya)
    shapes = [(key[3], key[4]) for key, _ in _bordered_buffers()]
    assert ((3, 18, 18, 4), (2, 2, 2, 2)) in shapes and ((3, 18, 18, 4), (1, 1, 1, 1)) in shapes


@pytest.mark.parametrize("pixels, channels, repeats", [(784, 6, 196), (49, 50, 7), (13, 7, 13), (64, 4096, 1)])
def test_conv_bias_is_tiled_over_whole_pixels(pixels, channels, repeats):
    bias = np.arange(channels, dtype=np.float32)
    tiled = conv._tiled_bias(bias, pixels, np)
    assert tiled.shape == (repeats * channels,) and pixels % repeats == 0
    assert repeats == 1 or repeats * channels <= 2048
    np.testing.assert_array_equal(tiled.reshape(repeats, channels), np.broadcast_to(bias, (repeats, channels)))


@pytest.mark.parametrize("name", CONV_CASES)
def test_conv2d_path_two_threads_one_image_chunks(name, monkeypatch):
    case = CONV_CASES[name]
    x, w, b = conv_inputs(case)
    parallel.set_num_threads(1)
    y1, dx1, dw1, db1, _ = run_conv(case, x, w, b)

    parallel.set_num_threads(2)
    monkeypatch.setattr(parallel, "_MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(conv, "_chunk_grain", lambda *shapes: 1)  # one image per chunk, uneven
    spy = Spy(monkeypatch, conv)
    y2, dx2, dw2, db2, _ = run_conv(case, x, w, b)
    # every image its own chunk, chunk k on thread k mod 2 (batch 5: thread 0 gets three, thread 1 two)
    n = case.x_shape[0]
    assert sorted(spy.calls) == sorted([(k, k + 1, k % 2) for k in range(n)] * 2), spy.calls
    spy.assert_used_threads()
    for what, got, ref in (("y", y2, y1), ("dx", dx2, dx1), ("dw", dw2, dw1), ("db", db2, db1)):
        if ref is None:
            assert got is None
        else:
            assert_close(got, ref, RTOL_THREADS, f"{name}: {what}, 2 threads vs 1")

    # bitwise reproducible for a given thread count; need_dx=False leaves dw unchanged
    y3, dx3, dw3, db3, _ = run_conv(case, x, w, b)
    np.testing.assert_array_equal(y3, y2)
    np.testing.assert_array_equal(dx3, dx2)
    np.testing.assert_array_equal(dw3, dw2)
    _, no_dx, dw4, _, _ = run_conv(case, x, w, b, need_dx=False)
    assert no_dx is None
    np.testing.assert_array_equal(dw4, dw2)

    # float32 (same memory layout, same path) against float64
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    b32 = None if b is None else b.astype(np.float32)
    assert conv_paths(case, x32, w32) == (case.forward, case.dx)
    y4, dx4, dw4, db4, _ = run_conv(case, x32, w32, b32)
    for what, got, ref in (("y", y4, y1), ("dx", dx4, dx1), ("dw", dw4, dw1), ("db", db4, db1)):
        if ref is None:
            assert got is None
        else:
            assert got.dtype == np.float32, what
            assert_close(got, ref, RTOL32, f"{name}: {what}, float32 vs float64")


# -- max pooling -------------------------------------------------------------------------------
# (N, C, H, W), kernel, stride, padding, ceil_mode, tiled (whether backward takes the assign-only path)
POOL_CASES = {
    "2x2 stride 2 on 8x8": ((5, 3, 8, 8), 2, 2, 0, False, True),
    "3x3 stride 2 padding 1": ((5, 3, 8, 8), 3, 2, 1, False, False),
    # ceil mode pads the buffer to 8x8 with -inf, which the 2x2 windows then tile
    "2x2 stride 2 on 7x7 ceil_mode": ((5, 3, 7, 7), 2, 2, 0, True, True),
    "2x2 stride 1 (overlapping)": ((5, 3, 7, 7), 2, 1, 0, False, False),
    "3x3 stride 2 padding 1 ceil_mode on 7x6": ((5, 2, 7, 6), 3, 2, 1, True, False),
    "3x3 stride 3 on 9x6": ((5, 4, 9, 6), 3, 3, 0, False, True),
    "2x2 stride 2, 24 channels": ((3, 24, 6, 4), 2, 2, 0, False, True),
}


def tie_inputs(shape, kind, seed=0):
    """Inputs with many equal values inside a window."""
    rng = np.random.default_rng(seed)
    if kind == "integers 0..2":
        return rng.integers(0, 3, size=shape).astype(np.float64)
    return np.maximum(rng.standard_normal(shape), 0.0)  # after a ReLU: windows of zeros


def reference_max_pool(x, dy_fn, kernel, stride, padding, ceil_mode):
    """Per-window loops: each window's max and the first (row-major) position holding it gets the gradient."""
    n, c, h, w = x.shape

    def out_size(size):
        num = size + 2 * padding - kernel
        out = (-(-num // stride) if ceil_mode else num // stride) + 1
        if ceil_mode and (out - 1) * stride >= size + padding:
            out -= 1
        return out

    ho, wo = out_size(h), out_size(w)
    y = np.empty((n, c, ho, wo))
    argmax = np.empty((n, c, ho, wo, 2), dtype=int)
    for i_n in range(n):
        for i_c in range(c):
            for oh in range(ho):
                for ow in range(wo):
                    best, pos = -np.inf, None
                    for i in range(kernel):
                        for j in range(kernel):
                            r, s = oh * stride - padding + i, ow * stride - padding + j
                            if 0 <= r < h and 0 <= s < w and x[i_n, i_c, r, s] > best:
                                best, pos = x[i_n, i_c, r, s], (r, s)
                    y[i_n, i_c, oh, ow] = best
                    argmax[i_n, i_c, oh, ow] = pos
    dy = dy_fn(y.shape)
    dx = np.zeros_like(x)
    for i_n in range(n):
        for i_c in range(c):
            for oh in range(ho):
                for ow in range(wo):
                    r, s = argmax[i_n, i_c, oh, ow]
                    dx[i_n, i_c, r, s] += dy[i_n, i_c, oh, ow]
    return y, dy, dx


def _pool_geometry_tiled(x_shape, kernel, stride, padding, ceil_mode):
    k, s, _, out, (hb, wb) = pool._geometry(x_shape, kernel, stride, padding, ceil_mode, "max_pool2d")
    return s == k and out[0] * k[0] == hb and out[1] * k[1] == wb


@pytest.mark.parametrize("kind", ["integers 0..2", "relu zeros"])
@pytest.mark.parametrize("name", POOL_CASES)
def test_max_pool2d_ties_go_to_the_first_max(name, kind):
    shape, kernel, stride, padding, ceil_mode, tiled = POOL_CASES[name]
    assert _pool_geometry_tiled(shape, kernel, stride, padding, ceil_mode) == tiled
    x = tie_inputs(shape, kind)
    ry, dy, rdx = reference_max_pool(x, lambda s: np.random.default_rng(2).standard_normal(s),
                                     kernel, stride, padding, ceil_mode)
    parallel.set_num_threads(1)
    strided = np.zeros(shape[:3] + (2 * shape[3],))[..., ::2]  # neither layout: the per-offset path
    strided[...] = x
    for layout, xin in (("NCHW", x), ("channels-last", channels_last(x)), ("strided", strided)):
        y, cache = pool.max_pool2d(xin, kernel, stride, padding, ceil_mode)
        np.testing.assert_array_equal(y, ry, err_msg=f"{layout} forward")
        dx = pool.max_pool2d_backward(channels_last(dy), cache)
        assert_close(dx, rdx, 1e-15, f"{layout} dx")


@pytest.mark.parametrize("name", POOL_CASES)
def test_max_pool2d_takes_the_flat_path_exactly_for_tiling_windows(name, monkeypatch):
    """Windows that tile the buffer (stride = kernel, no overlap, no gap) run on the flat memory
    of a dense buffer: channels-last inputs, C-contiguous NCHW inputs (one plane an item) and
    padded ceil-mode buffers (channels-last) alike, when a run (C, or 1 for planes) is short.
    Other geometries, long runs and strided inputs take the per-offset path. Both give the
    reference (the tests above)."""
    shape, kernel, stride, padding, ceil_mode, tiled = POOL_CASES[name]
    slots = []
    real = pool.scratch

    def spy(xp, shp, dt, slot="default"):
        slots.append(slot)
        return real(xp, shp, dt, slot)

    monkeypatch.setattr(pool, "scratch", spy)
    x = tie_inputs(shape, "relu zeros")
    strided = np.zeros(shape[:3] + (2 * shape[3],))[..., ::2]
    strided[...] = x
    short = shape[1] <= pool.TILED_MAX_RUN  # channels-last runs are C long; NCHW planes' are 1
    for layout, xin, flat in (("NCHW", x, tiled and (short or not ceil_mode)),
                              ("channels-last", channels_last(x), tiled and short),
                              ("strided", strided, tiled and ceil_mode and short)):
        del slots[:]
        y, cache = pool.max_pool2d(xin, kernel, stride, padding, ceil_mode)
        pool.max_pool2d_backward(np.ones(y.shape), cache)
        assert ("poolrowmax" in slots) == flat, (layout, slots)
        assert (cache[0] == "tiled") == flat


@pytest.mark.parametrize("kind", ["integers 0..2", "relu zeros"])
@pytest.mark.parametrize("name", POOL_CASES)
def test_max_pool2d_ties_match_torch(name, kind):
    torch = torch_or_skip()
    shape, kernel, stride, padding, ceil_mode, _ = POOL_CASES[name]
    x = tie_inputs(shape, kind, seed=5)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, kernel, stride, padding, ceil_mode=ceil_mode)
    dy = np.random.default_rng(6).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    # PyTorch routes each window's gradient to its first max too (checked here on these inputs)
    _, _, rdx = reference_max_pool(x, lambda s: dy, kernel, stride, padding, ceil_mode)
    assert_close(xt.grad.numpy(), rdx, 1e-15, "torch vs the per-window reference")

    parallel.set_num_threads(1)
    y, cache = pool.max_pool2d(x, kernel, stride, padding, ceil_mode)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    assert_close(pool.max_pool2d_backward(dy, cache), xt.grad.numpy(), 1e-15, "dx vs torch")


@pytest.mark.parametrize("chunking", ["grain_for", "one image per chunk"])
@pytest.mark.parametrize("kind", ["integers 0..2", "relu zeros"])
@pytest.mark.parametrize("name", POOL_CASES)
def test_max_pool2d_two_threads_equal_one(name, kind, chunking, monkeypatch):
    shape, kernel, stride, padding, ceil_mode, _ = POOL_CASES[name]
    x = channels_last(tie_inputs(shape, kind, seed=3))
    dy = channels_last(np.random.default_rng(4).standard_normal(
        pool.max_pool2d(x, kernel, stride, padding, ceil_mode)[0].shape))

    def run():
        y, cache = pool.max_pool2d(x, kernel, stride, padding, ceil_mode)
        return y, pool.max_pool2d_backward(dy, cache)

    parallel.set_num_threads(1)
    y1, dx1 = run()
    parallel.set_num_threads(2)
    monkeypatch.setattr(parallel, "_MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(pool, "TILED_MIN_PARALLEL_BYTES", 0)
    if chunking == "one image per chunk":
        monkeypatch.setattr(pool, "grain_for", lambda n, bytes_per_item, target=0: 1)
    spy = Spy(monkeypatch, pool)
    y2, dx2 = run()
    spy.assert_used_threads()
    np.testing.assert_array_equal(y2, y1)
    np.testing.assert_array_equal(dx2, dx1)


# -- batch norm --------------------------------------------------------------------------------
# shape, expected widening factor r of the (M/r, r·C) view
BN_SHAPES = {
    "C=16, M=64 (widened r=16)": ((4, 16, 4, 4), 16),
    "C=16, M=12 (widened r=4)": ((3, 16, 2, 2), 4),
    "C=16, odd M=45 (not widened)": ((3, 16, 3, 5), 1),
    "(N, C)=(48, 16) (widened r=16)": ((48, 16), 16),
    "(N, C)=(9, 16) (not widened)": ((9, 16), 1),
}
AFFINE = {"weight and bias": (True, True), "no affine": (False, False), "weight only": (True, False),
          "bias only": (False, True)}


def bn_inputs(shape, weight, bias, layout, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.standard_normal(shape) * 2.0 + 3.0
    dy = rng.standard_normal(shape)
    if len(shape) == 4 and layout == "channels-last":
        x, dy = channels_last(x), channels_last(dy)
    w = rng.uniform(0.5, 1.5, c) if weight else None
    b = rng.standard_normal(c) if bias else None
    running_mean = rng.standard_normal(c)
    running_var = rng.uniform(0.5, 2.0, c)
    return x, dy, w, b, running_mean, running_var


def run_bn(x, dy, w, b, running_mean, running_var, training):
    rm, rv = running_mean.copy(), running_var.copy()
    y, cache = norm.batch_norm(x, w, b, rm, rv, training=training, momentum=0.1, eps=1e-5)
    dx, dw, db = norm.batch_norm_backward(dy, cache)
    return y, dx, dw, db, rm, rv


BN_LAYOUTS = [(name, layout) for name, (shape, _) in BN_SHAPES.items()
              for layout in (("NCHW", "channels-last") if len(shape) == 4 else ("(N, C)",))]


@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
@pytest.mark.parametrize("shape_name, layout", BN_LAYOUTS)
def test_batch_norm_matches_torch(shape_name, layout, training, affine):
    shape, r = BN_SHAPES[shape_name]
    torch = torch_or_skip()
    m = int(np.prod(shape)) // shape[1]
    assert norm._Wide(np, m, shape[1]).r == r
    has_w, has_b = AFFINE[affine]
    x, dy, w, b, running_mean, running_var = bn_inputs(shape, has_w, has_b, layout)
    parallel.set_num_threads(1)
    y, dx, dw, db, rm, rv = run_bn(x, dy, w, b, running_mean, running_var, training)

    xt = torch.tensor(np.ascontiguousarray(x), requires_grad=True)
    wt = None if w is None else torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    trm, trv = torch.tensor(running_mean), torch.tensor(running_var)
    yt = torch.nn.functional.batch_norm(xt, trm, trv, wt, bt, training=training, momentum=0.1, eps=1e-5)
    yt.backward(torch.tensor(np.ascontiguousarray(dy)))

    assert_close(y, yt.detach().numpy(), RTOL64, "y")
    assert_close(dx, xt.grad.numpy(), RTOL64, "dx")
    if w is None:
        assert dw is None
    else:
        assert_close(dw, wt.grad.numpy(), RTOL64, "dweight")
    if b is None:
        assert db is None
    else:
        assert_close(db, bt.grad.numpy(), RTOL64, "dbias")
    assert_close(rm, trm.numpy(), RTOL64, "running mean")
    assert_close(rv, trv.numpy(), RTOL64, "running var")
    if not training:
        np.testing.assert_array_equal(rm, running_mean)
        np.testing.assert_array_equal(rv, running_var)


@pytest.mark.parametrize("chunking", ["grain_for", "small uneven chunks"])
@pytest.mark.parametrize("affine", ["weight and bias", "no affine"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
@pytest.mark.parametrize("shape_name", BN_SHAPES)
def test_batch_norm_two_threads_equal_one(shape_name, training, affine, chunking, monkeypatch):
    shape, _ = BN_SHAPES[shape_name]
    has_w, has_b = AFFINE[affine]
    x, dy, w, b, running_mean, running_var = bn_inputs(shape, has_w, has_b, "channels-last", seed=7)
    parallel.set_num_threads(1)
    ref = run_bn(x, dy, w, b, running_mean, running_var, training)

    parallel.set_num_threads(2)
    monkeypatch.setattr(parallel, "_MIN_PARALLEL_BYTES", 0)
    if chunking == "small uneven chunks":
        monkeypatch.setattr(norm, "_row_grain", lambda m, c: max(1, m // 4))
    spy = Spy(monkeypatch, norm)
    got = run_bn(x, dy, w, b, running_mean, running_var, training)
    spy.assert_used_threads()
    for what, g, r in zip(("y", "dx", "dweight", "dbias", "running mean", "running var"), got, ref):
        if r is None:
            assert g is None, what
        else:
            assert_close(g, r, RTOL_THREADS, f"{what}: 2 threads vs 1")
    again = run_bn(x, dy, w, b, running_mean, running_var, training)
    for g, a in zip(got, again):
        if g is not None:
            np.testing.assert_array_equal(a, g)

    x32, dy32 = x.astype(np.float32), dy.astype(np.float32)
    w32 = None if w is None else w.astype(np.float32)
    b32 = None if b is None else b.astype(np.float32)
    got32 = run_bn(x32, dy32, w32, b32, running_mean.astype(np.float32), running_var.astype(np.float32),
                   training)
    for what, g, r in zip(("y", "dx", "dweight", "dbias"), got32, ref):
        if r is not None:
            assert g.dtype == np.float32, what
            assert_close(g, r, RTOL32, f"{what}: float32 vs float64")


# -- a ReLU fused into conv2d and batch_norm -----------------------------------------------------
def assert_fused_relu(y_plain, y, expected_grads, grads, names):
    """The fused output is max(plain output, 0), and its gradients are those of the plain op fed
    relu_backward's dy."""
    assert (y_plain < 0).any() and (y_plain > 0).any()  # the ReLU has something to do
    np.testing.assert_array_equal(y, np.maximum(y_plain, 0))
    for what, g, e in zip(names, grads, expected_grads):
        if e is None:
            assert g is None, what
        else:
            assert_close(g, e, 1e-13, what)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", CONV_CASES)
def test_conv2d_with_fused_relu_equals_conv_then_relu(name, threads, monkeypatch):
    """relu=True gives max(y, 0), and backward with relu_out masks dy exactly as relu_backward would,
    on every conv path (and across threads, in small chunks)."""
    case = CONV_CASES[name]
    x, w, b = conv_inputs(case)
    parallel.set_num_threads(threads)
    monkeypatch.setattr(parallel, "_MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(conv, "_chunk_grain", lambda *a: 2)
    args = (case.stride, case.padding, case.dilation, case.groups)
    y_plain, cache_plain = conv.conv2d(x, w, b, *args)
    y, cache = conv.conv2d(x, w, b, *args, relu=True)
    assert y.transpose(0, 2, 3, 1).flags.c_contiguous
    dy = channels_last(np.random.default_rng(3).standard_normal(y.shape))
    assert_fused_relu(y_plain, y, conv.conv2d_backward(dy * (y > 0), cache_plain),
                      conv.conv2d_backward(dy, cache, relu_out=y), ("dx", "dw", "db"))


@pytest.mark.parametrize("name", ["planar C=1 5x5 pad 2", "rows C=16 O=16 3x3 pad 1", "im2col O=80",
                                  "pointwise 1x1", "depthwise 3x3"])
def test_conv2d_with_fused_relu_matches_finite_differences(name, float64):
    case = CONV_CASES[name]
    x, w, b = conv_inputs(case, seed=5)
    x, w = x[:2, :, :6, :7].copy(), w.copy()  # small: every element is perturbed twice
    args = (case.stride, case.padding, case.dilation, case.groups)

    def forward(x, w, b):
        y, cache = conv.conv2d(x, w, b, *args, relu=True)
        return y, (cache, y)

    def backward(dy, caches):
        return conv.conv2d_backward(dy, caches[0], relu_out=caches[1])

    check_op(forward, backward, [x, w, b.copy()])


@pytest.mark.parametrize("affine", ["weight and bias", "no affine"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
@pytest.mark.parametrize("threads", [1, 2])
def test_batch_norm_with_fused_relu_equals_batch_norm_then_relu(threads, training, affine, monkeypatch):
    has_w, has_b = AFFINE[affine]
    x, dy, w, b, running_mean, running_var = bn_inputs((6, 16, 5, 7), has_w, has_b, "channels-last", seed=4)
    parallel.set_num_threads(threads)
    monkeypatch.setattr(parallel, "_MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(norm, "_row_grain", lambda m, c: max(1, m // 5))
    y_plain, cache_plain = norm.batch_norm(x, w, b, running_mean.copy(), running_var.copy(), training=training)
    y, cache = norm.batch_norm(x, w, b, running_mean.copy(), running_var.copy(), training=training, relu=True)
    assert_fused_relu(y_plain, y, norm.batch_norm_backward(dy * (y > 0), cache_plain),
                      norm.batch_norm_backward(dy, cache, relu_out=y), ("dx", "dweight", "dbias"))


@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
def test_batch_norm_with_fused_relu_matches_finite_differences(training, float64):
    x, _, w, b, running_mean, running_var = bn_inputs((4, 3, 3, 4), True, True, "channels-last", seed=6)
    x = np.ascontiguousarray(x)

    def forward(x, w, b):
        y, cache = norm.batch_norm(x, w, b, running_mean.copy(), running_var.copy(), training=training, relu=True)
        return y, (cache, y)

    def backward(dy, caches):
        return norm.batch_norm_backward(dy, caches[0], relu_out=caches[1])

    check_op(forward, backward, [x, w, b])
