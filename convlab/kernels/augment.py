"""Random crop and horizontal flip of a batch in one pass on the GPU.

The fused twin of `data.augment.RandomCrop` followed by `RandomHorizontalFlip`: each output pixel
reads its source directly (or takes `fill` outside the image), instead of building index arrays,
gathering, masking and flipping in separate passes. The per-sample offsets and flips are drawn by
the caller, on the host, from its seeded generator.
"""

from __future__ import annotations

from .build import blocks_for, f64, i32, i64, kernel, register

AUGMENT_SOURCE = register("augment", r"""
// out[n, c, i, j] = x[n, c, top[n] + i, left[n] + (flip[n] ? out_w - 1 - j : j)], or fill outside x.
// x is contiguous (N, C, H, W); out is contiguous (N, C, out_h, out_w).
extern "C" __global__ void crop_flip(
    const real_t* __restrict__ x, real_t* __restrict__ out, const long long* __restrict__ top,
    const long long* __restrict__ left, const unsigned char* __restrict__ flip,
    long long total, int channels, int height, int width, int out_h, int out_w, double fill)
{
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        long long r = e;
        const int j = (int)(r % out_w); r /= out_w;
        const int i = (int)(r % out_h); r /= out_h;
        const long long plane = r;  // n * C + c
        const int n = (int)(r / channels);
        const int sy = (int)top[n] + i;
        const int sx = (int)left[n] + (flip[n] ? out_w - 1 - j : j);
        out[e] = (sy >= 0 && sy < height && sx >= 0 && sx < width)
                     ? x[(plane * height + sy) * width + sx] : (real_t)fill;
    }
}
""", ("crop_flip",))


def crop_flip(x, top, left, flip, size, fill=0.0):
    """Crop a (th, tw) window at (top[n], left[n]) of each image of x (N, C, H, W), mirrored where
    flip[n]; offsets are in source coordinates and may be negative (padding by `fill`)."""
    import cupy

    th, tw = (size, size) if isinstance(size, int) else size
    n, c, h, w = x.shape
    x = cupy.ascontiguousarray(x)
    top = cupy.ascontiguousarray(cupy.asarray(top), dtype=cupy.int64)
    left = cupy.ascontiguousarray(cupy.asarray(left), dtype=cupy.int64)
    flip = cupy.ascontiguousarray(cupy.asarray(flip), dtype=cupy.uint8)
    for name, a in (("top", top), ("left", left), ("flip", flip)):
        if a.shape != (n,):
            raise ValueError(f"crop_flip: {name} must have one entry per image, shape ({n},), got {a.shape}")
    out = cupy.empty((n, c, th, tw), dtype=x.dtype)
    if out.size:
        kernel("augment", "crop_flip", x.dtype)(
            (blocks_for(out.size),), (256,),
            (x, out, top, left, flip, i64(out.size), i32(c), i32(h), i32(w), i32(th), i32(tw), f64(fill)))
    return out
