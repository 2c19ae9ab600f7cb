// The VAE decoder's non-convolution work in channels-last (NHWC) bf16: GroupNorm (+ SiLU) and the
// 2x nearest upsample. The reference stack runs GroupNorm as ~10 f32 launches over 0.5 GB tensors;
// here it is one statistics read and one fused normalise-affine-SiLU pass. Channels-last is what
// cuDNN's fastest bf16 convolutions read and write, so activations never change layout between
// convolutions. Compiled to PTX by build.rs with the `cuda` feature; launched from
// src/model/vae/cuda.rs. Every kernel needs `channels` to be a multiple of 8 (16-byte vectors).

#include "common.cuh"

// Partial sums for GroupNorm: block (blk, n) reads pixels [blk*pixels_per_block, ...) of image n
// (x = [n, pixels, channels]) and writes, for each group, (sum, sum of squares) as doubles to
// partials[((n * gridDim.x) + blk) * groups + g]. Threads own one 8-channel vector of a pixel; f32
// sums per thread cover at most a few hundred values, the rest is combined in f64.
extern "C" __global__ void zi_group_partials_nhwc_bf16(const __nv_bfloat16* __restrict__ x, double2* __restrict__ partials,
                                                       long long pixels, int channels, int groups,
                                                       long long pixels_per_block) {
    extern __shared__ float sums[];  // [2 * channels]: sum, then sum of squares
    const int vecs = channels / 8;
    const int pixel_lanes = blockDim.x / vecs;
    const int vec = threadIdx.x % vecs;
    const int lane = threadIdx.x / vecs;
    for (int c = threadIdx.x; c < 2 * channels; c += blockDim.x) sums[c] = 0.f;
    __syncthreads();

    const long long image = blockIdx.y;
    const long long begin = blockIdx.x * pixels_per_block;
    const long long end = min(begin + pixels_per_block, pixels);
    float s[8] = {0.f}, q[8] = {0.f};
    if (lane < pixel_lanes) {
        const Bf16x8* src = reinterpret_cast<const Bf16x8*>(x + image * pixels * channels);
        for (long long p = begin + lane; p < end; p += pixel_lanes) {
            float v[8];
            unpack(src[p * vecs + vec], v);
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                s[j] += v[j];
                q[j] += v[j] * v[j];
            }
        }
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            atomicAdd(&sums[vec * 8 + j], s[j]);
            atomicAdd(&sums[channels + vec * 8 + j], q[j]);
        }
    }
    __syncthreads();

    const int per_group = channels / groups;
    for (int g = threadIdx.x; g < groups; g += blockDim.x) {
        double gs = 0.0, gq = 0.0;
        for (int c = g * per_group; c < (g + 1) * per_group; ++c) {
            gs += sums[c];
            gq += sums[channels + c];
        }
        partials[(image * gridDim.x + blockIdx.x) * groups + g] = make_double2(gs, gq);
    }
}

// mean[n, g] and (biased) var[n, g] from the partials of `blocks` blocks; one thread per (n, g).
extern "C" __global__ void zi_group_finish(const double2* __restrict__ partials, float* __restrict__ mean,
                                           float* __restrict__ var, int images, int groups, int blocks,
                                           double count) {
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= images * groups) return;
    const int image = idx / groups;
    const int g = idx % groups;
    double s = 0.0, q = 0.0;
    for (int b = 0; b < blocks; ++b) {
        const double2 p = partials[((long long)image * blocks + b) * groups + g];
        s += p.x;
        q += p.y;
    }
    const double m = s / count;
    mean[idx] = (float)m;
    var[idx] = (float)fmax(q / count - m * m, 0.0);
}

// y = (x - mean[n, g]) * rsqrt(var[n, g] + eps) * weight[c] + bias[c], then SiLU when `silu`;
// all in f32 and rounded once, as torch's bf16 GroupNorm. Grid-stride over 8-channel vectors.
extern "C" __global__ void zi_group_norm_nhwc_bf16(const __nv_bfloat16* __restrict__ x, const float* __restrict__ mean,
                                                   const float* __restrict__ var, const float* __restrict__ weight,
                                                   const float* __restrict__ bias, __nv_bfloat16* __restrict__ y,
                                                   long long pixels, int channels, int groups, float eps, int silu,
                                                   long long total_vecs) {
    const int vecs = channels / 8;
    const int per_group = channels / groups;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total_vecs;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long image = idx / (pixels * vecs);
        const int c0 = (int)(idx % vecs) * 8;
        float v[8];
        unpack(reinterpret_cast<const Bf16x8*>(x)[idx], v);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int c = c0 + j;
            const long long stat = image * groups + c / per_group;
            const float scale = rsqrtf(var[stat] + eps) * weight[c];
            float o = (v[j] - mean[stat]) * scale + bias[c];
            if (silu) o = o / (1.f + __expf(-o));
            v[j] = o;
        }
        reinterpret_cast<Bf16x8*>(y)[idx] = pack(v);
    }
}

// Nearest-neighbour 2x upsample: y[n, 2h, 2w, c] from x[n, h, w, c]; one 8-channel vector a thread.
extern "C" __global__ void zi_upsample2x_nhwc_bf16(const __nv_bfloat16* __restrict__ x, __nv_bfloat16* __restrict__ y,
                                                   int height, int width, int channels, long long total_vecs) {
    const int vecs = channels / 8;
    const long long out_w = 2LL * width, out_h = 2LL * height;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total_vecs;
         idx += (long long)gridDim.x * blockDim.x) {
        const int vec = (int)(idx % vecs);
        const long long pixel = idx / vecs;
        const long long ox = pixel % out_w;
        const long long oy = (pixel / out_w) % out_h;
        const long long image = pixel / (out_w * out_h);
        const long long src = ((image * height + oy / 2) * width + ox / 2) * vecs + vec;
        reinterpret_cast<Bf16x8*>(y)[idx] = reinterpret_cast<const Bf16x8*>(x)[src];
    }
}
