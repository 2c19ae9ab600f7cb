// Helpers shared by the element-wise kernels (bf16 storage, f32 math).
#pragma once

#include <cuda_bf16.h>
#include <stdint.h>

namespace {

constexpr int WARP = 32;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int offset = WARP / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffff, v, offset);
    return v;
}

// Sum over the whole block; `shared` holds one float per warp.
__device__ float block_sum(float v, float* shared) {
    const int lane = threadIdx.x % WARP;
    const int warp = threadIdx.x / WARP;
    v = warp_sum(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    const int warps = (blockDim.x + WARP - 1) / WARP;
    float total = 0.f;
    for (int i = 0; i < warps; ++i) total += shared[i];
    __syncthreads();
    return total;
}

// 8 bf16 = 16 bytes: the widest single load a thread can issue.
struct alignas(16) Bf16x8 {
    __nv_bfloat162 h[4];
};

__device__ __forceinline__ void unpack(const Bf16x8& v, float out[8]) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        float2 f = __bfloat1622float2(v.h[i]);
        out[2 * i] = f.x;
        out[2 * i + 1] = f.y;
    }
}

__device__ __forceinline__ Bf16x8 pack(const float in[8]) {
    Bf16x8 v;
#pragma unroll
    for (int i = 0; i < 4; ++i) v.h[i] = __floats2bfloat162_rn(in[2 * i], in[2 * i + 1]);
    return v;
}

// Rounds through bf16 and back: where the reference (PyTorch in bf16) stores an intermediate, the
// fused kernels round too, so they agree with it rather than with an f32 computation.
__device__ __forceinline__ float rb(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

}  // namespace
