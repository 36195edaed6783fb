// Fused softmax cross-entropy, forward and backward, one thread block per row.
//
// Per row with a = coef_nll, c = coef_smooth (fairseq: a = 1-eps-eps/(V-1), c = eps/(V-1);
// uniform: a = 1-eps, c = eps/V), z = z-loss weight:
//   loss = a * nll + c * (V * lse - sum_j x_j) + z * lse^2
//   dloss/dx_j = (a + c V + 2 z lse) p_j - a [j == t] - c ;  dnll/dx_j = p_j - [j == t]
// Everything is computed in fp32 whatever the logits' dtype; rows whose target equals
// ignore_index get loss = nll = 0 and a zero gradient.
#include "common.cuh"

namespace bigseq {
namespace {

constexpr int kThreads = 512;  // 16 warps

template <typename T>
__global__ void ce_forward_kernel(const T* __restrict__ logits, const int64_t* __restrict__ target,
                                  float* __restrict__ loss, float* __restrict__ nll, float* __restrict__ lse_out,
                                  int64_t V, int64_t stride, int64_t ignore_index, float coef_nll,
                                  float coef_smooth, float z_loss) {
  const int64_t row = blockIdx.x;
  const T* x = logits + row * stride;
  MaxSum ms{-INFINITY, 0.f};
  float sum_x = 0.f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    const float v = to_float(x[j]);
    ms = combine(ms, MaxSum{v, 1.f});
    sum_x += v;
  }
  ms = warp_combine(ms);
  sum_x = warp_sum(sum_x);
  __shared__ float sh_m[32], sh_s[32], sh_x[32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    sh_m[warp] = ms.m;
    sh_s[warp] = ms.s;
    sh_x[warp] = sum_x;
  }
  __syncthreads();
  if (warp != 0) return;
  const int n_warps = blockDim.x / 32;
  ms = lane < n_warps ? MaxSum{sh_m[lane], sh_s[lane]} : MaxSum{-INFINITY, 0.f};
  sum_x = lane < n_warps ? sh_x[lane] : 0.f;
  ms = warp_combine(ms);
  sum_x = warp_sum(sum_x);
  if (lane != 0) return;
  const float lse = ms.m + logf(ms.s);
  const int64_t t = target[row];
  lse_out[row] = lse;
  if (t == ignore_index) {
    loss[row] = 0.f;
    nll[row] = 0.f;
    return;
  }
  const float row_nll = lse - to_float(x[t]);
  nll[row] = row_nll;
  loss[row] = coef_nll * row_nll + coef_smooth * (static_cast<float>(V) * lse - sum_x) + z_loss * lse * lse;
}

// dlogits may alias logits (in-place): each element is read and then written by the same thread.
template <typename T>
__global__ void ce_backward_kernel(const T* logits, const int64_t* __restrict__ target,
                                   const float* __restrict__ lse, const float* __restrict__ g_loss,
                                   const float* __restrict__ g_nll, T* dlogits, int64_t V, int64_t stride,
                                   int64_t dstride, int64_t ignore_index, float coef_nll, float coef_smooth,
                                   float z_loss) {
  const int64_t row = blockIdx.x;
  const int64_t t = target[row];
  const bool keep = t != ignore_index;
  const float gl = keep ? g_loss[row] : 0.f;
  const float gn = keep ? g_nll[row] : 0.f;
  const float row_lse = lse[row];
  const float p_coef = gl * (coef_nll + coef_smooth * static_cast<float>(V) + 2.f * z_loss * row_lse) + gn;
  const float target_coef = gl * coef_nll + gn;
  const float constant = gl * coef_smooth;
  const T* x = logits + row * stride;
  T* d = dlogits + row * dstride;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    const float p = __expf(to_float(x[j]) - row_lse);
    d[j] = from_float<T>(p_coef * p - constant - (j == t ? target_coef : 0.f));
  }
}

template <typename T>
void forward_typed(const void* logits, const int64_t* target, float* loss, float* nll, float* lse, int64_t N,
                   int64_t V, int64_t stride, int64_t ignore_index, float a, float c, float z, cudaStream_t stream) {
  ce_forward_kernel<T><<<N, kThreads, 0, stream>>>(static_cast<const T*>(logits), target, loss, nll, lse, V, stride,
                                                   ignore_index, a, c, z);
}

template <typename T>
void backward_typed(const void* logits, const int64_t* target, const float* lse, const float* g_loss,
                    const float* g_nll, void* dlogits, int64_t N, int64_t V, int64_t stride, int64_t dstride,
                    int64_t ignore_index, float a, float c, float z, cudaStream_t stream) {
  ce_backward_kernel<T><<<N, kThreads, 0, stream>>>(static_cast<const T*>(logits), target, lse, g_loss, g_nll,
                                                    static_cast<T*>(dlogits), V, stride, dstride, ignore_index, a, c,
                                                    z);
}

}  // namespace

void softmax_ce_forward(int dtype, const void* logits, const int64_t* target, float* loss, float* nll, float* lse,
                        int64_t N, int64_t V, int64_t stride, int64_t ignore_index, float coef_nll,
                        float coef_smooth, float z_loss, cudaStream_t stream) {
  if (N == 0) return;
  switch (dtype) {
    case kFloat32:
      return forward_typed<float>(logits, target, loss, nll, lse, N, V, stride, ignore_index, coef_nll,
                                  coef_smooth, z_loss, stream);
    case kFloat16:
      return forward_typed<__half>(logits, target, loss, nll, lse, N, V, stride, ignore_index, coef_nll,
                                   coef_smooth, z_loss, stream);
    default:
      return forward_typed<__nv_bfloat16>(logits, target, loss, nll, lse, N, V, stride, ignore_index, coef_nll,
                                          coef_smooth, z_loss, stream);
  }
}

void softmax_ce_backward(int dtype, const void* logits, const int64_t* target, const float* lse,
                         const float* g_loss, const float* g_nll, void* dlogits, int64_t N, int64_t V,
                         int64_t stride, int64_t dstride, int64_t ignore_index, float coef_nll, float coef_smooth,
                         float z_loss, cudaStream_t stream) {
  if (N == 0) return;
  switch (dtype) {
    case kFloat32:
      return backward_typed<float>(logits, target, lse, g_loss, g_nll, dlogits, N, V, stride, dstride,
                                   ignore_index, coef_nll, coef_smooth, z_loss, stream);
    case kFloat16:
      return backward_typed<__half>(logits, target, lse, g_loss, g_nll, dlogits, N, V, stride, dstride,
                                    ignore_index, coef_nll, coef_smooth, z_loss, stream);
    default:
      return backward_typed<__nv_bfloat16>(logits, target, lse, g_loss, g_nll, dlogits, N, V, stride, dstride,
                                           ignore_index, coef_nll, coef_smooth, z_loss, stream);
  }
}

}  // namespace bigseq
