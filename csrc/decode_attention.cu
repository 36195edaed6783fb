// Decode attention: one query token per sequence against a KV cache with per-sequence
// lengths, split over the cache length (split-K) and combined in a second kernel.
//
// q (B, Hq, D); k/v cache (B, S, Hkv, D) with strides; cache_seqlens (B,) int32 in [1, S];
// out (B, Hq, D). Query head h reads cache head h / (Hq / Hkv) (GQA/MQA).
// Pass 1: grid (splits, Hq, B), 4 warps; each warp walks keys j = split_start + warp, +4, ...,
// a lane holds D/32 strided elements; partial (max, sum, acc[D]) per split go to fp32 scratch.
// Pass 2: grid (Hq, B), D threads: rescale partials by exp(m_split - m) and normalize.
#include "common.cuh"

namespace bigseq {
namespace {

constexpr int kWarps = 4;

template <typename T, int D>
__global__ void decode_split_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                    const int* __restrict__ seqlens, float* __restrict__ part_m,
                                    float* __restrict__ part_l, float* __restrict__ part_acc, int64_t q_sb,
                                    int64_t q_sh, int64_t k_sb, int64_t k_ss, int64_t k_sh, int64_t v_sb,
                                    int64_t v_ss, int64_t v_sh, int group, int split_len, float scale) {
  constexpr int EPL = D / 32;  // elements per lane
  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int n_splits = gridDim.x, n_heads = gridDim.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int hk = h / group;
  const int len = seqlens[b];
  const int start = split * split_len;
  const int end = min(len, start + split_len);

  float qr[EPL], acc[EPL];
#pragma unroll
  for (int i = 0; i < EPL; ++i) {
    qr[i] = to_float(q[b * q_sb + h * q_sh + lane + 32 * i]) * scale;
    acc[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int j = start + warp; j < end; j += kWarps) {
    const T* kp = k + b * k_sb + j * k_ss + hk * k_sh;
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < EPL; ++i) s += qr[i] * to_float(kp[lane + 32 * i]);
    s = warp_sum(s);
    const float m_new = fmaxf(m, s);
    const float alpha = __expf(m - m_new);
    const float p = __expf(s - m_new);
    l = l * alpha + p;
    const T* vp = v + b * v_sb + j * v_ss + hk * v_sh;
#pragma unroll
    for (int i = 0; i < EPL; ++i) acc[i] = acc[i] * alpha + p * to_float(vp[lane + 32 * i]);
    m = m_new;
  }

  __shared__ float sh_m[kWarps], sh_l[kWarps];
  __shared__ float sh_acc[kWarps][D];
  if (lane == 0) {
    sh_m[warp] = m;
    sh_l[warp] = l;
  }
#pragma unroll
  for (int i = 0; i < EPL; ++i) sh_acc[warp][lane + 32 * i] = acc[i];
  __syncthreads();
  if (warp != 0) return;
  float m_all = -INFINITY;
  for (int w = 0; w < kWarps; ++w) m_all = fmaxf(m_all, sh_m[w]);
  float l_all = 0.f, out[EPL];
#pragma unroll
  for (int i = 0; i < EPL; ++i) out[i] = 0.f;
  for (int w = 0; w < kWarps; ++w) {
    if (sh_m[w] == -INFINITY) continue;  // warp saw no key
    const float f = __expf(sh_m[w] - m_all);
    l_all += sh_l[w] * f;
#pragma unroll
    for (int i = 0; i < EPL; ++i) out[i] += sh_acc[w][lane + 32 * i] * f;
  }
  const int64_t idx = (static_cast<int64_t>(b) * n_heads + h) * n_splits + split;
  if (lane == 0) {
    part_m[idx] = m_all;
    part_l[idx] = l_all;
  }
#pragma unroll
  for (int i = 0; i < EPL; ++i) part_acc[idx * D + lane + 32 * i] = out[i];
}

template <typename T>
__global__ void decode_combine_kernel(const float* __restrict__ part_m, const float* __restrict__ part_l,
                                      const float* __restrict__ part_acc, T* __restrict__ out, int64_t o_sb,
                                      int64_t o_sh, int n_splits, int D) {
  const int h = blockIdx.x, b = blockIdx.y, n_heads = gridDim.x;
  const int64_t base = (static_cast<int64_t>(b) * n_heads + h) * n_splits;
  float m = -INFINITY;
  for (int s = 0; s < n_splits; ++s) m = fmaxf(m, part_m[base + s]);
  float l = 0.f, acc = 0.f;
  for (int s = 0; s < n_splits; ++s) {
    const float ms = part_m[base + s];
    if (ms == -INFINITY) continue;  // split beyond this sequence's length
    const float f = __expf(ms - m);
    l += part_l[base + s] * f;
    acc += part_acc[(base + s) * D + threadIdx.x] * f;
  }
  out[b * o_sb + h * o_sh + threadIdx.x] = from_float<T>(acc / l);
}

template <typename T, int D>
void launch_typed(const void* q, const void* k, const void* v, const int* seqlens, void* out, float* scratch,
                  int B, int Hq, int Hkv, int n_splits, int split_len, const int64_t* strides, float scale,
                  cudaStream_t stream) {
  const int64_t parts = static_cast<int64_t>(B) * Hq * n_splits;
  float* part_m = scratch;
  float* part_l = scratch + parts;
  float* part_acc = scratch + 2 * parts;
  decode_split_kernel<T, D><<<dim3(n_splits, Hq, B), kWarps * 32, 0, stream>>>(
      static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), seqlens, part_m, part_l,
      part_acc, strides[0], strides[1], strides[2], strides[3], strides[4], strides[5], strides[6], strides[7],
      Hq / Hkv, split_len, scale);
  decode_combine_kernel<T><<<dim3(Hq, B), D, 0, stream>>>(part_m, part_l, part_acc, static_cast<T*>(out),
                                                          strides[8], strides[9], n_splits, D);
}

template <typename T>
bool launch_dim(int D, const void* q, const void* k, const void* v, const int* seqlens, void* out, float* scratch,
                int B, int Hq, int Hkv, int n_splits, int split_len, const int64_t* strides, float scale,
                cudaStream_t stream) {
  switch (D) {
    case 32: launch_typed<T, 32>(q, k, v, seqlens, out, scratch, B, Hq, Hkv, n_splits, split_len, strides, scale, stream); return true;
    case 64: launch_typed<T, 64>(q, k, v, seqlens, out, scratch, B, Hq, Hkv, n_splits, split_len, strides, scale, stream); return true;
    case 128: launch_typed<T, 128>(q, k, v, seqlens, out, scratch, B, Hq, Hkv, n_splits, split_len, strides, scale, stream); return true;
    case 256: launch_typed<T, 256>(q, k, v, seqlens, out, scratch, B, Hq, Hkv, n_splits, split_len, strides, scale, stream); return true;
    default: return false;
  }
}

}  // namespace

// scratch: fp32, (2 + D) * B * Hq * n_splits floats. strides: q (b, h), k (b, s, h), v (b, s, h), out (b, h).
// Returns false for an unsupported head dim (the caller validates first).
bool decode_attention(int dtype, const void* q, const void* k, const void* v, const int* seqlens, void* out,
                      float* scratch, int B, int Hq, int Hkv, int D, int n_splits, int split_len,
                      const int64_t* strides, float scale, cudaStream_t stream) {
  switch (dtype) {
    case kFloat32:
      return launch_dim<float>(D, q, k, v, seqlens, out, scratch, B, Hq, Hkv, n_splits, split_len, strides, scale, stream);
    case kFloat16:
      return launch_dim<__half>(D, q, k, v, seqlens, out, scratch, B, Hq, Hkv, n_splits, split_len, strides, scale, stream);
    default:
      return launch_dim<__nv_bfloat16>(D, q, k, v, seqlens, out, scratch, B, Hq, Hkv, n_splits, split_len, strides, scale, stream);
  }
}

}  // namespace bigseq
