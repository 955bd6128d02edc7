// Decode attention for the engine's CPU path: one new query token per sequence attends to its
// context straight in the paged KV cache, reading each key and value where it lies.
//
// The torch path gathers the context out of the cache (index_select, a copy per layer) and calls
// SDPA; at a decode step's sizes (one query, 9 heads of 64, a context of ~100-500 tokens) that
// was 40-120 us a layer here, this 6-25 us. Long contexts are bound by reading the cache (at
// 1,200 tokens 1.8 MB a layer). Reference and tests: attention.py,
// tests/engine/cpu_kernels/test_attention.py.
//
// Layouts (the scheduler's, see graphwright/engine/model.py AttentionInputs):
//   q        float32 [B, H, D]      the new token's queries, RoPE applied
//   k_cache  float32 [S, KV, D]     one layer's cache, slot = block * block_size + offset
//   v_cache  float32 [S, KV, D]
//   slots    int64 [B, L]           each sequence's context slots, in order; only the first
//                                   lens[b] are read (the new token's own slot included)
//   lens     int32 or int64 [B]
// Query head h reads KV head h / (H / KV) (grouped-query attention). Arithmetic in float32.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/inductor/aoti_torch/utils.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <immintrin.h>

namespace {

// One sequence's part of the context, [l0, l1), for all its query heads: the flash-decoding
// split. Each part keeps, per head, its own softmax maximum m, the sum s of exp(score - m) and
// the values weighted by those exponentials, acc; the driver then merges the parts. Splitting
// the context rather than the KV heads (SmolLM2 has 3, for 2 threads) keeps every thread busy on
// one long sequence: 1.17-1.38x over a split by KV head at contexts of 600-1200 (30 layers,
// caches flushed), the same at short contexts and in batches.
struct Part {
  const float* q;  // [H, D]
  const float* k;  // the layer's cache: slot s's keys at k + s * slot_stride, [KV, D]
  const float* v;
  const int64_t* slots;  // this part's slots
  int64_t len;  // how many
  int64_t heads, group, dim, slot_stride;
  float* out;  // [H, D + 2]: acc, then m and s
};

// The portable loops (any CPU, any D).
void part_portable(const Part& p, float scale, float* scores) {
  const int64_t dim = p.dim, len = p.len;
  for (int64_t h = 0; h < p.heads; ++h) {
    const float* q = p.q + h * dim;
    const int64_t at = (h / p.group) * dim;
    float* s = scores + h * len;
    for (int64_t l = 0; l < len; ++l) {
      const float* key = p.k + p.slots[l] * p.slot_stride + at;
      float dot = 0.f;
      for (int64_t i = 0; i < dim; ++i) dot += q[i] * key[i];
      s[l] = dot * scale;
    }
    const float top = *std::max_element(s, s + len);
    float total = 0.f;
    for (int64_t l = 0; l < len; ++l) total += s[l] = std::exp(s[l] - top);
    float* acc = p.out + h * (dim + 2);
    std::fill(acc, acc + dim, 0.f);
    for (int64_t l = 0; l < len; ++l) {
      const float* value = p.v + p.slots[l] * p.slot_stride + at;
      for (int64_t i = 0; i < dim; ++i) acc[i] += s[l] * value[i];
    }
    acc[dim] = top;
    acc[dim + 1] = total;
  }
}

#define GW_AVX512 __attribute__((target("avx512f")))

// exp(x) for x <= 0 as Cephes' expf computes it: x = n ln2 + r, |r| <= ln2 / 2, a degree-5
// polynomial for exp(r), times 2^n; within ~2 ulp of std::exp (checked against the float64
// reference in the tests).
GW_AVX512 inline __m512 exp_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-88.f));  // exp(-88) is below float's normal range: 0 after scalef
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // ln2 in two parts, exact first
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);
}

constexpr int kMaxGroup = 8;  // query heads per KV head on the AVX-512 path (registers)

// The same with AVX-512, for D = 16 * Chunks and up to kMaxGroup query heads per KV head: one KV
// head at a time, its query heads' queries and accumulators held in registers.
template <int Chunks>
GW_AVX512 void part_avx512(const Part& p, float scale, float* scores) {
  constexpr int64_t dim = 16 * Chunks;
  const int64_t len = p.len, group = p.group, kv_heads = p.heads / p.group;
  __m512 q[kMaxGroup][Chunks], acc[kMaxGroup][Chunks];
  for (int64_t kv = 0; kv < kv_heads; ++kv) {  // scores
    for (int64_t g = 0; g < group; ++g) {
      for (int c = 0; c < Chunks; ++c) {
        q[g][c] = _mm512_mul_ps(_mm512_loadu_ps(p.q + (kv * group + g) * dim + 16 * c), _mm512_set1_ps(scale));
      }
    }
    for (int64_t l = 0; l < len; ++l) {
      const float* key = p.k + p.slots[l] * p.slot_stride + kv * dim;
      for (int64_t g = 0; g < group; ++g) {
        __m512 dot = _mm512_mul_ps(q[g][0], _mm512_loadu_ps(key));
        for (int c = 1; c < Chunks; ++c) dot = _mm512_fmadd_ps(q[g][c], _mm512_loadu_ps(key + 16 * c), dot);
        scores[(kv * group + g) * len + l] = _mm512_reduce_add_ps(dot);
      }
    }
  }
  for (int64_t h = 0; h < p.heads; ++h) {  // exp(score - max) in place, and their sum
    float* s = scores + h * len;
    const float top = *std::max_element(s, s + len);
    __m512 total = _mm512_setzero_ps();
    int64_t l = 0;
    for (; l + 16 <= len; l += 16) {
      const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(s + l), _mm512_set1_ps(top)));
      _mm512_storeu_ps(s + l, e);
      total = _mm512_add_ps(total, e);
    }
    if (l < len) {
      const __mmask16 m = static_cast<__mmask16>((1u << (len - l)) - 1);
      const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + l), _mm512_set1_ps(top)));
      _mm512_mask_storeu_ps(s + l, m, e);
      total = _mm512_add_ps(total, _mm512_maskz_mov_ps(m, e));
    }
    p.out[h * (dim + 2) + dim] = top;
    p.out[h * (dim + 2) + dim + 1] = _mm512_reduce_add_ps(total);
  }
  for (int64_t kv = 0; kv < kv_heads; ++kv) {  // the weighted values
    for (int64_t g = 0; g < group; ++g) {
      for (int c = 0; c < Chunks; ++c) acc[g][c] = _mm512_setzero_ps();
    }
    for (int64_t l = 0; l < len; ++l) {
      const float* value = p.v + p.slots[l] * p.slot_stride + kv * dim;
      for (int64_t g = 0; g < group; ++g) {
        const __m512 w = _mm512_set1_ps(scores[(kv * group + g) * len + l]);
        for (int c = 0; c < Chunks; ++c) acc[g][c] = _mm512_fmadd_ps(w, _mm512_loadu_ps(value + 16 * c), acc[g][c]);
      }
    }
    for (int64_t g = 0; g < group; ++g) {
      float* out = p.out + (kv * group + g) * (dim + 2);
      for (int c = 0; c < Chunks; ++c) _mm512_storeu_ps(out + 16 * c, acc[g][c]);
    }
  }
}

bool has_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

at::Tensor decode_attention_with(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                 const at::Tensor& slots, const at::Tensor& lens, double scale, bool avx512) {
  TORCH_CHECK(q.dim() == 3 && q.scalar_type() == at::kFloat && q.device().is_cpu(),
              "decode_attention: q must be a float32 CPU tensor [B, H, D]");
  for (const auto* c : {&k_cache, &v_cache}) {
    TORCH_CHECK(c->dim() == 3 && c->scalar_type() == at::kFloat && c->is_contiguous(),
                "decode_attention: the caches must be contiguous float32 [slots, KV, D]");
  }
  const int64_t batch = q.size(0), heads = q.size(1), dim = q.size(2);
  const int64_t num_slots = k_cache.size(0), kv_heads = k_cache.size(1);
  TORCH_CHECK(v_cache.sizes() == k_cache.sizes() && k_cache.size(2) == dim,
              "decode_attention: k_cache and v_cache must both be [slots, KV, ", dim, "]");
  TORCH_CHECK(kv_heads > 0 && heads % kv_heads == 0, "decode_attention: ", heads,
              " query heads do not split into groups over ", kv_heads, " KV heads");
  TORCH_CHECK(slots.dim() == 2 && slots.size(0) == batch && slots.scalar_type() == at::kLong,
              "decode_attention: slots must be int64 [B, L] with B = ", batch);
  TORCH_CHECK(lens.dim() == 1 && lens.size(0) == batch, "decode_attention: lens must be [B] with B = ", batch);

  const at::Tensor qc = q.contiguous(), sc = slots.contiguous();
  TORCH_CHECK(lens.scalar_type() == at::kInt || lens.scalar_type() == at::kLong,
              "decode_attention: lens must be int32 or int64");
  // Read in place (a .to(kLong) was a copy, ~8 us of a ~20 us call).
  std::vector<int64_t> len_of(static_cast<size_t>(batch));
  const at::Tensor lc = lens.contiguous();
  for (int64_t b = 0; b < batch; ++b) {
    len_of[b] = lens.scalar_type() == at::kInt ? lc.data_ptr<int32_t>()[b] : lc.data_ptr<int64_t>()[b];
  }
  const int64_t width = sc.size(1);
  const int64_t* len_at = len_of.data();
  const int64_t* slot_at = sc.data_ptr<int64_t>();
  for (int64_t b = 0; b < batch; ++b) {  // checked here, so the loops below read only real slots
    TORCH_CHECK(len_at[b] >= 1 && len_at[b] <= width, "decode_attention: lens[", b, "] = ", len_at[b],
                " is outside 1..", width);
    for (int64_t l = 0; l < len_at[b]; ++l) {
      const int64_t s = slot_at[b * width + l];
      TORCH_CHECK(s >= 0 && s < num_slots, "decode_attention: slots[", b, ", ", l, "] = ", s,
                  " is outside the cache's ", num_slots, " slots");
    }
  }

  at::Tensor out = at::empty({batch, heads, dim}, q.options());
  const int64_t group = heads / kv_heads;
  // Llama-family head sizes; more query heads per KV head than registers hold: portable.
  const bool wide = avx512 && (dim == 32 || dim == 64 || dim == 128) && group <= kMaxGroup;
  const float* q_at = qc.data_ptr<float>();
  float* out_at = out.data_ptr<float>();
  int64_t longest = 0;
  for (int64_t b = 0; b < batch; ++b) longest = std::max(longest, len_at[b]);
  // Parts per sequence: enough for every thread to have work when the batch is small, none
  // shorter than 128 slots (a part's fixed costs), one for a short context.
  const int64_t threads = at::get_num_threads();
  const int64_t parts = std::clamp<int64_t>(longest / 128, 1, std::max<int64_t>(1, 2 * threads / batch));
  const int64_t part_len = (longest + parts - 1) / parts;
  const int64_t stride = dim + 2;
  std::vector<float> partial(static_cast<size_t>(batch * parts * heads * stride));
  std::vector<int64_t> used(static_cast<size_t>(batch * parts), 0);  // slots in each part (0: none)
  const float scale_f = static_cast<float>(scale);
  at::parallel_for(0, batch * parts, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(heads * part_len));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / parts, l0 = (task % parts) * part_len;
      const int64_t n = std::min(len_at[b], l0 + part_len) - l0;
      if (n <= 0) continue;  // a shorter sequence of the batch: nothing in this part
      used[task] = n;
      const Part p{q_at + b * heads * dim, k_cache.data_ptr<float>(), v_cache.data_ptr<float>(),
                   slot_at + b * width + l0, n, heads, group, dim, kv_heads * dim,
                   partial.data() + task * heads * stride};
      if (wide && dim == 64) part_avx512<4>(p, scale_f, scores.data());
      else if (wide && dim == 128) part_avx512<8>(p, scale_f, scores.data());
      else if (wide) part_avx512<2>(p, scale_f, scores.data());
      else part_portable(p, scale_f, scores.data());
    }
  });
  // Merge each sequence's parts: rescale each part's sums to the largest maximum.
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      float top = -std::numeric_limits<float>::infinity();
      for (int64_t c = 0; c < parts; ++c) {
        if (used[b * parts + c]) top = std::max(top, partial[((b * parts + c) * heads + h) * stride + dim]);
      }
      float* o = out_at + (b * heads + h) * dim;
      std::fill(o, o + dim, 0.f);
      float total = 0.f;
      for (int64_t c = 0; c < parts; ++c) {
        if (!used[b * parts + c]) continue;
        const float* acc = partial.data() + ((b * parts + c) * heads + h) * stride;
        const float w = std::exp(acc[dim] - top);
        total += w * acc[dim + 1];
        for (int64_t i = 0; i < dim; ++i) o[i] += w * acc[i];
      }
      for (int64_t i = 0; i < dim; ++i) o[i] /= total;
    }
  }
  return out;
}

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                            const at::Tensor& slots, const at::Tensor& lens, double scale) {
  return decode_attention_with(q, k_cache, v_cache, slots, lens, scale, has_avx512());
}

// The portable loops on any CPU, so that the tests check them where AVX-512 is present too.
at::Tensor decode_attention_portable(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                     const at::Tensor& slots, const at::Tensor& lens, double scale) {
  return decode_attention_with(q, k_cache, v_cache, slots, lens, scale, false);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(graphwright, lib) {
  lib.def("decode_attention(Tensor q, Tensor k_cache, Tensor v_cache, Tensor slots, Tensor lens, float scale) -> Tensor");
  lib.def("decode_attention_portable(Tensor q, Tensor k_cache, Tensor v_cache, Tensor slots, Tensor lens, float scale) -> Tensor");
  lib.impl("decode_attention", c10::DispatchKey::CPU, &decode_attention);
  lib.impl("decode_attention_portable", c10::DispatchKey::CPU, &decode_attention_portable);
}

// The op as a C function for Inductor's generated C++ (see aoti_torch_cpu_q_matmul in qmatmul.cpp).
extern "C" AOTITorchError aoti_torch_cpu_decode_attention(AtenTensorHandle q, AtenTensorHandle k_cache,
                                                          AtenTensorHandle v_cache, AtenTensorHandle slots,
                                                          AtenTensorHandle lens, double scale, AtenTensorHandle* out) {
  using torch::aot_inductor::tensor_handle_to_tensor_pointer;
  AOTI_TORCH_CONVERT_EXCEPTION_TO_ERROR_CODE({
    *out = torch::aot_inductor::new_tensor_handle(decode_attention(
        *tensor_handle_to_tensor_pointer(q), *tensor_handle_to_tensor_pointer(k_cache),
        *tensor_handle_to_tensor_pointer(v_cache), *tensor_handle_to_tensor_pointer(slots),
        *tensor_handle_to_tensor_pointer(lens), scale));
  });
}
