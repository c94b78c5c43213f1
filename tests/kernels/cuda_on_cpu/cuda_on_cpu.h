// A CPU emulation of the CUDA features convlab's kernels use, so their sources can run without a GPU
// (see cupy/__init__.py beside this file). Blocks run one after another; the threads of a block run
// one after another too, unless the source synchronises (__syncthreads, warp shuffles), in which case
// each CUDA thread is an OS thread and barriers stand in for the hardware's.
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>
using std::exp; using std::log; using std::max; using std::min; using std::sqrt;

struct dim3 { unsigned x = 1, y = 1, z = 1; };
thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static  // one block at a time, so one copy is the block's shared memory

static std::unique_ptr<std::barrier<>> block_barrier;
static std::unique_ptr<std::barrier<>> warp_barrier[32];
static double warp_values[32][32];

inline void __syncthreads() { block_barrier->arrive_and_wait(); }

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, sizeof f); return f; }

template <typename T> T shuffle_from(T v, int source_lane) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    warp_values[warp][lane] = (double)v;
    warp_barrier[warp]->arrive_and_wait();
    const T r = (T)warp_values[warp][source_lane];
    warp_barrier[warp]->arrive_and_wait();
    return r;
}

template <typename T> T __shfl_down_sync(unsigned, T v, int delta) {
    const int lane = threadIdx.x & 31;
    return shuffle_from(v, lane + delta < 32 ? lane + delta : lane);
}

template <typename T> T __shfl_xor_sync(unsigned, T v, int mask) {
    return shuffle_from(v, (int)(threadIdx.x & 31) ^ mask);
}

inline void run_grid(unsigned gx, unsigned gy, unsigned bx, bool threaded, const std::function<void()>& body) {
    gridDim = dim3{gx, gy, 1};
    blockDim = dim3{bx, 1, 1};
    for (unsigned by_ = 0; by_ < gy; ++by_) {
        for (unsigned bx_ = 0; bx_ < gx; ++bx_) {
            if (!threaded) {
                for (unsigned t = 0; t < bx; ++t) {
                    blockIdx = dim3{bx_, by_, 0};
                    threadIdx = dim3{t, 0, 0};
                    body();
                }
                continue;
            }
            block_barrier.reset(new std::barrier<>(bx));
            for (unsigned w = 0; w < (bx + 31) / 32; ++w)
                warp_barrier[w].reset(new std::barrier<>(std::min(32u, bx - 32 * w)));
            std::vector<std::thread> threads;
            for (unsigned t = 0; t < bx; ++t)
                threads.emplace_back([=, &body] {
                    blockIdx = dim3{bx_, by_, 0};
                    threadIdx = dim3{t, 0, 0};
                    body();
                });
            for (auto& th : threads) th.join();
        }
    }
}
