// Torch bindings of bigseq's CUDA ops. Arguments arrive validated by bigseq.kernels
// (shapes, dtypes, index ranges); the checks here only guard the raw-pointer contract.
// The caller passes the current CUDA stream (torch.cuda.current_stream().cuda_stream) and
// has made the tensors' device current, so only the CUDA runtime header is needed here.
#include <cuda_runtime_api.h>
#include <torch/extension.h>

#include <algorithm>
#include <vector>

namespace bigseq {
void softmax_ce_forward(int dtype, const void* logits, const int64_t* target, float* loss, float* nll, float* lse,
                        int64_t N, int64_t V, int64_t stride, int64_t ignore_index, float coef_nll,
                        float coef_smooth, float z_loss, cudaStream_t stream);
void softmax_ce_backward(int dtype, const void* logits, const int64_t* target, const float* lse,
                         const float* g_loss, const float* g_nll, void* dlogits, int64_t N, int64_t V,
                         int64_t stride, int64_t dstride, int64_t ignore_index, float coef_nll, float coef_smooth,
                         float z_loss, cudaStream_t stream);
bool decode_attention(int dtype, const void* q, const void* k, const void* v, const int* seqlens, void* out,
                      float* scratch, int B, int Hq, int Hkv, int D, int n_splits, int split_len,
                      const int64_t* strides, float scale, cudaStream_t stream);
}  // namespace bigseq

namespace {

cudaStream_t as_stream(int64_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

void check_launch(const char* op) {
  const cudaError_t err = cudaGetLastError();
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA launch failed: ", cudaGetErrorString(err));
}

int dtype_code(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return 0;
    case at::kHalf: return 1;
    case at::kBFloat16: return 2;
    default: TORCH_CHECK(false, "bigseq CUDA ops: expected float32, float16 or bfloat16, got ", t.scalar_type());
  }
  return -1;
}

void check_rows(const at::Tensor& logits, const at::Tensor& target) {
  TORCH_CHECK(logits.is_cuda() && logits.dim() == 2 && logits.stride(1) == 1, "logits: expected CUDA (N, V), unit stride");
  TORCH_CHECK(target.is_cuda() && target.scalar_type() == at::kLong && target.is_contiguous(), "target: CUDA int64");
}

std::vector<at::Tensor> ce_forward(const at::Tensor& logits, const at::Tensor& target, int64_t ignore_index,
                                   double coef_nll, double coef_smooth, double z_loss, int64_t stream) {
  check_rows(logits, target);
  const auto f32 = logits.options().dtype(at::kFloat);
  const int64_t N = logits.size(0);
  auto loss = at::empty({N}, f32), nll = at::empty({N}, f32), lse = at::empty({N}, f32);
  bigseq::softmax_ce_forward(dtype_code(logits), logits.data_ptr(), target.data_ptr<int64_t>(),
                             loss.data_ptr<float>(), nll.data_ptr<float>(), lse.data_ptr<float>(), N,
                             logits.size(1), logits.stride(0), ignore_index, coef_nll, coef_smooth, z_loss,
                             as_stream(stream));
  check_launch("ce_forward");
  return {loss, nll, lse};
}

void ce_backward(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& lse, const at::Tensor& g_loss,
                 const at::Tensor& g_nll, const at::Tensor& dlogits, int64_t ignore_index, double coef_nll,
                 double coef_smooth, double z_loss, int64_t stream) {
  check_rows(logits, target);
  TORCH_CHECK(dlogits.sizes() == logits.sizes() && dlogits.stride(1) == 1 &&
                  dlogits.scalar_type() == logits.scalar_type(), "dlogits: expected the shape and dtype of logits");
  for (const auto* t : {&lse, &g_loss, &g_nll})
    TORCH_CHECK(t->scalar_type() == at::kFloat && t->is_contiguous() && t->numel() == logits.size(0),
                "lse/g_loss/g_nll: expected contiguous float32 (N,)");
  bigseq::softmax_ce_backward(dtype_code(logits), logits.data_ptr(), target.data_ptr<int64_t>(),
                              lse.data_ptr<float>(), g_loss.data_ptr<float>(), g_nll.data_ptr<float>(),
                              dlogits.data_ptr(), logits.size(0), logits.size(1), logits.stride(0),
                              dlogits.stride(0), ignore_index, coef_nll, coef_smooth, z_loss,
                              as_stream(stream));
  check_launch("ce_backward");
}

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                            const at::Tensor& cache_seqlens, double scale, int64_t stream) {
  TORCH_CHECK(q.is_cuda() && q.dim() == 3 && q.stride(2) == 1, "q: expected CUDA (B, Hq, D), unit stride");
  TORCH_CHECK(k_cache.dim() == 4 && k_cache.stride(3) == 1 && v_cache.stride(3) == 1, "k/v_cache: (B, S, Hkv, D)");
  TORCH_CHECK(cache_seqlens.scalar_type() == at::kInt && cache_seqlens.is_contiguous(), "cache_seqlens: int32");
  const int B = q.size(0), Hq = q.size(1), D = q.size(2), S = k_cache.size(1), Hkv = k_cache.size(2);
  // enough blocks to fill the device twice over, but at least 64 keys per split
  int sms = 0;
  TORCH_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, q.get_device()) == cudaSuccess,
              "decode_attention: cannot query the device");
  const int max_splits = std::max(1, (S + 63) / 64);
  const int n_splits = std::min(max_splits, std::max(1, (2 * sms + B * Hq - 1) / (B * Hq)));
  const int split_len = (S + n_splits - 1) / n_splits;
  auto out = at::empty_like(q);
  auto scratch = at::empty({static_cast<int64_t>(B) * Hq * n_splits * (2 + D)}, q.options().dtype(at::kFloat));
  const int64_t strides[10] = {q.stride(0),       q.stride(1),       k_cache.stride(0), k_cache.stride(1),
                               k_cache.stride(2), v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
                               out.stride(0),     out.stride(1)};
  const bool ok = bigseq::decode_attention(dtype_code(q), q.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(),
                                           cache_seqlens.data_ptr<int>(), out.data_ptr(), scratch.data_ptr<float>(),
                                           B, Hq, Hkv, D, n_splits, split_len, strides, static_cast<float>(scale),
                                           as_stream(stream));
  TORCH_CHECK(ok, "decode_attention: head dim must be 32, 64, 128 or 256, got ", D);
  check_launch("decode_attention");
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "bigseq CUDA ops: fused softmax cross-entropy and split-K decode attention";
  m.def("ce_forward", &ce_forward, "cross-entropy rows forward -> (loss, nll, lse)");
  m.def("ce_backward", &ce_backward, "cross-entropy rows backward, writes dlogits (may alias logits)");
  m.def("decode_attention", &decode_attention, "one-token attention against a KV cache");
}
