// Fused element-wise kernels for the Z-Image transformer block (bf16 activations, f32 math).
// Each replaces a chain of 3-6 separate element-wise launches in the reference stack; every
// kernel reads its inputs once and writes its output once (the row re-read hits L1/L2).
// Compiled to PTX by build.rs with the `cuda` feature; launched from src/model/fused.rs.

#include "common.cuh"


// Rows are up to ROW_VECS_PER_LANE * 32 vectors of 8 (4096 values): one warp per row keeps its
// row in registers between the sum of squares and the normalisation, reduces with shuffles only,
// and many rows are in flight per SM. (One block per row was latency-bound: ~0.11 ms for a
// 4128 x 3840 row set that needs ~0.02 ms of memory traffic.)
constexpr int ROW_VECS_PER_LANE = 16;
constexpr int ROWS_PER_BLOCK = 8;

// Loads one row of `vecs` 8-wide vectors into the warp's registers (lane takes vectors lane,
// lane + 32, ...) and returns the row's sum of squares, reduced over the warp.
__device__ __forceinline__ float hold_row_sum_squares(const Bf16x8* row, int vecs, int lane,
                                                      Bf16x8 (&held)[ROW_VECS_PER_LANE]) {
    float sum = 0.f;
#pragma unroll
    for (int k = 0; k < ROW_VECS_PER_LANE; ++k) {
        const int i = lane + k * WARP;
        if (i < vecs) {
            held[k] = row[i];
            float v[8];
            unpack(held[k], v);
#pragma unroll
            for (int j = 0; j < 8; ++j) sum += v[j] * v[j];
        }
    }
    return warp_sum(sum);
}

// y[r, :] = rmsnorm(x[r, :]) * weight[:] * factor[:]      (factor = 1 + adaLN scale)
// `weight` f32 [dim]; `factor` bf16 [dim] or null. Rounded to bf16 after the norm, after the
// weight and after the factor, as diffusers' RMSNorm and the block's `norm(x) * scale` do. `dim` a
// multiple of 8, at most 4096; rows `x_stride` apart.
extern "C" __global__ void zi_rms_norm_scale_bf16(const __nv_bfloat16* __restrict__ x, const float* __restrict__ weight,
                                                  const __nv_bfloat16* __restrict__ factor,
                                                  __nv_bfloat16* __restrict__ y, int dim, long long x_stride,
                                                  float eps, long long rows) {
    const long long row = blockIdx.x * (long long)ROWS_PER_BLOCK + threadIdx.x / WARP;
    if (row >= rows) return;
    const int lane = threadIdx.x % WARP;
    const int vecs = dim / 8;
    const Bf16x8* xr = reinterpret_cast<const Bf16x8*>(x + row * x_stride);
    Bf16x8* yr = reinterpret_cast<Bf16x8*>(y + row * (long long)dim);
    Bf16x8 held[ROW_VECS_PER_LANE];
    const float inv = rsqrtf(hold_row_sum_squares(xr, vecs, lane, held) / dim + eps);
#pragma unroll
    for (int k = 0; k < ROW_VECS_PER_LANE; ++k) {
        const int i = lane + k * WARP;
        if (i < vecs) {
            float v[8];
            unpack(held[k], v);
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                float o = rb(rb(v[j] * inv) * weight[8 * i + j]);
                if (factor) o *= __bfloat162float(factor[8 * i + j]);
                v[j] = o;
            }
            yr[i] = pack(v);
        }
    }
}

// out[r, :] = x[r, :] + gate[:] * (rmsnorm(branch[r, :]) * weight[:])    (gate = tanh(adaLN gate))
// The sandwich norm after attention / feed-forward plus the gated residual, in one pass. `weight`
// f32 [dim]; `gate` bf16 [dim] or null. Rounded where the
// reference rounds: after the norm, the weight, the gate and the sum. One warp per row as above.
extern "C" __global__ void zi_gated_residual_norm_bf16(const __nv_bfloat16* __restrict__ x,
                                                       const __nv_bfloat16* __restrict__ branch,
                                                       const float* __restrict__ weight,
                                                       const __nv_bfloat16* __restrict__ gate,
                                                       __nv_bfloat16* __restrict__ out, int dim, float eps,
                                                       long long rows) {
    const long long row = blockIdx.x * (long long)ROWS_PER_BLOCK + threadIdx.x / WARP;
    if (row >= rows) return;
    const int lane = threadIdx.x % WARP;
    const int vecs = dim / 8;
    const Bf16x8* xr = reinterpret_cast<const Bf16x8*>(x + row * (long long)dim);
    const Bf16x8* br = reinterpret_cast<const Bf16x8*>(branch + row * (long long)dim);
    Bf16x8* orow = reinterpret_cast<Bf16x8*>(out + row * (long long)dim);
    Bf16x8 held[ROW_VECS_PER_LANE];
    const float inv = rsqrtf(hold_row_sum_squares(br, vecs, lane, held) / dim + eps);
#pragma unroll
    for (int k = 0; k < ROW_VECS_PER_LANE; ++k) {
        const int i = lane + k * WARP;
        if (i < vecs) {
            float b[8], r[8];
            unpack(held[k], b);
            unpack(xr[i], r);
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                float n = rb(rb(b[j] * inv) * weight[8 * i + j]);
                if (gate) n = rb(__bfloat162float(gate[8 * i + j]) * n);
                r[j] += n;
            }
            orow[i] = pack(r);
        }
    }
}

// out[r, j] = silu(h[r, j]) * h[r, hidden + j] for the merged W1|W3 projection h = [rows, 2*hidden];
// silu rounded to bf16 before the product, as PyTorch does. Grid (rows, ceil(hidden/8/256)): no
// 64-bit division per element.
extern "C" __global__ void zi_swiglu_bf16(const __nv_bfloat16* __restrict__ h, __nv_bfloat16* __restrict__ out,
                                          int hidden) {
    const int vecs_per_row = hidden / 8;
    const int col = blockIdx.y * blockDim.x + threadIdx.x;
    if (col >= vecs_per_row) return;
    const long long row = blockIdx.x;
    const Bf16x8* hr = reinterpret_cast<const Bf16x8*>(h + row * 2LL * hidden);
    float a[8], b[8], o[8];
    unpack(hr[col], a);
    unpack(hr[vecs_per_row + col], b);
#pragma unroll
    for (int j = 0; j < 8; ++j) o[j] = rb(a[j] / (1.f + __expf(-a[j]))) * b[j];
    reinterpret_cast<Bf16x8*>(out + row * (long long)hidden)[col] = pack(o);
}

// Per-head RMSNorm of q and k (head_dim 128: one warp per (token, head), 4 elements a lane) followed
// by interleaved RoPE: pairs (x[2i], x[2i+1]) rotated by (cos, sin) = rope[token, i, 0..2].
// Reads q and k straight out of the merged QKV projection qkv = [tokens, 3*heads*128] and writes
// out = [2, tokens, heads, 128] (q then k), the layout the attention kernel reads.
extern "C" __global__ void zi_qk_norm_rope_bf16(const __nv_bfloat16* __restrict__ qkv, const float* __restrict__ norm_w,
                                                const float* __restrict__ rope, __nv_bfloat16* __restrict__ out,
                                                int tokens, int heads, float eps) {
    constexpr int HEAD = 128;
    const int lane = threadIdx.x % WARP;
    const long long warp_id = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / WARP;
    const long long per_which = (long long)tokens * heads;
    if (warp_id >= 2 * per_which) return;
    const int which = (int)(warp_id / per_which);  // 0 = q, 1 = k
    const long long th = warp_id % per_which;
    const long long token = th / heads;
    const int head = (int)(th % heads);
    const long long dim = (long long)heads * HEAD;
    const __nv_bfloat16* src = qkv + token * 3 * dim + which * dim + (long long)head * HEAD + lane * 4;
    const __nv_bfloat162* s2 = reinterpret_cast<const __nv_bfloat162*>(src);
    float2 p0 = __bfloat1622float2(s2[0]);
    float2 p1 = __bfloat1622float2(s2[1]);
    const float inv = rsqrtf(warp_sum(p0.x * p0.x + p0.y * p0.y + p1.x * p1.x + p1.y * p1.y) / HEAD + eps);
    const float* w = norm_w + which * HEAD + lane * 4;
    // the reference's RMSNorm rounds to bf16 after the norm and after the weight; the rotation
    // then runs in f32 on that bf16 value
    p0.x = rb(rb(p0.x * inv) * w[0]);
    p0.y = rb(rb(p0.y * inv) * w[1]);
    p1.x = rb(rb(p1.x * inv) * w[2]);
    p1.y = rb(rb(p1.y * inv) * w[3]);
    const float* r = rope + (token * (HEAD / 2) + lane * 2) * 2;
    const float2 o0 = make_float2(p0.x * r[0] - p0.y * r[1], p0.x * r[1] + p0.y * r[0]);
    const float2 o1 = make_float2(p1.x * r[2] - p1.y * r[3], p1.x * r[3] + p1.y * r[2]);
    __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(out + warp_id * HEAD + lane * 4);
    dst[0] = __floats2bfloat162_rn(o0.x, o0.y);
    dst[1] = __floats2bfloat162_rn(o1.x, o1.y);
}
