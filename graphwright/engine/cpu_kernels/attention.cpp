// Decode attention for the engine's CPU path: one new query token per sequence attends to its
// context straight in the paged KV cache, reading each key and value where it lies.
//
// The torch path gathers the context out of the cache (index_select, a copy per layer) and calls
// SDPA; at a decode step's sizes (one query, 9 heads of 64, a context of ~100-500 tokens) that
// was ~50 us a layer here, almost all of it overhead around ~200k multiply-adds. Reference and
// tests: attention.py, tests/engine/cpu_kernels/test_attention.py.
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
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <immintrin.h>

namespace {

constexpr int kMaxGroup = 8;  // query heads per KV head on the AVX-512 path (registers)

struct Group {  // one sequence's query heads that share one KV head
  const float* q[kMaxGroup];  // each [D]
  float* out[kMaxGroup];
  int size;
  const float* k;  // the cache at this KV head: slot s's key at k + s * slot_stride
  const float* v;
  const int64_t* slots;
  int64_t len;
};

// The portable loops (any CPU, any D): scores, softmax, weighted sum of the values.
void attend_portable(const Group& g, int64_t dim, int64_t slot_stride, float scale, float* scores) {
  for (int h = 0; h < g.size; ++h) {
    float* s = scores + h * g.len;
    for (int64_t l = 0; l < g.len; ++l) {
      const float* key = g.k + g.slots[l] * slot_stride;
      float dot = 0.f;
      for (int64_t i = 0; i < dim; ++i) dot += g.q[h][i] * key[i];
      s[l] = dot * scale;
    }
    const float top = *std::max_element(s, s + g.len);
    float total = 0.f;
    for (int64_t l = 0; l < g.len; ++l) total += s[l] = std::exp(s[l] - top);
    std::fill(g.out[h], g.out[h] + dim, 0.f);
    for (int64_t l = 0; l < g.len; ++l) {
      const float* value = g.v + g.slots[l] * slot_stride;
      const float p = s[l] / total;
      for (int64_t i = 0; i < dim; ++i) g.out[h][i] += p * value[i];
    }
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

// The same with AVX-512, for D = 16 * Chunks: each key and value is loaded once for the whole
// group, and a head's query and output are Chunks registers each.
template <int Chunks>
GW_AVX512 void attend_avx512(const Group& g, int64_t slot_stride, float scale, float* scores) {
  constexpr int chunks = Chunks;
  __m512 q[kMaxGroup][Chunks], acc[kMaxGroup][Chunks];
  for (int h = 0; h < g.size; ++h) {
    for (int c = 0; c < chunks; ++c) {
      q[h][c] = _mm512_mul_ps(_mm512_loadu_ps(g.q[h] + 16 * c), _mm512_set1_ps(scale));
      acc[h][c] = _mm512_setzero_ps();
    }
  }
  for (int64_t l = 0; l < g.len; ++l) {
    const float* key = g.k + g.slots[l] * slot_stride;
    for (int h = 0; h < g.size; ++h) {
      __m512 dot = _mm512_mul_ps(q[h][0], _mm512_loadu_ps(key));
      for (int c = 1; c < chunks; ++c) dot = _mm512_fmadd_ps(q[h][c], _mm512_loadu_ps(key + 16 * c), dot);
      scores[h * g.len + l] = _mm512_reduce_add_ps(dot);
    }
  }
  float inv_total[kMaxGroup];
  for (int h = 0; h < g.size; ++h) {
    float* s = scores + h * g.len;
    const float top = *std::max_element(s, s + g.len);
    __m512 total = _mm512_setzero_ps();
    int64_t l = 0;
    for (; l + 16 <= g.len; l += 16) {
      const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(s + l), _mm512_set1_ps(top)));
      _mm512_storeu_ps(s + l, e);
      total = _mm512_add_ps(total, e);
    }
    if (l < g.len) {
      const __mmask16 m = static_cast<__mmask16>((1u << (g.len - l)) - 1);
      const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + l), _mm512_set1_ps(top)));
      _mm512_mask_storeu_ps(s + l, m, e);
      total = _mm512_add_ps(total, _mm512_maskz_mov_ps(m, e));
    }
    inv_total[h] = 1.f / _mm512_reduce_add_ps(total);
  }
  for (int64_t l = 0; l < g.len; ++l) {
    const float* value = g.v + g.slots[l] * slot_stride;
    for (int h = 0; h < g.size; ++h) {
      const __m512 p = _mm512_set1_ps(scores[h * g.len + l]);
      for (int c = 0; c < chunks; ++c) acc[h][c] = _mm512_fmadd_ps(p, _mm512_loadu_ps(value + 16 * c), acc[h][c]);
    }
  }
  for (int h = 0; h < g.size; ++h) {
    const __m512 inv = _mm512_set1_ps(inv_total[h]);
    for (int c = 0; c < chunks; ++c) _mm512_storeu_ps(g.out[h] + 16 * c, _mm512_mul_ps(acc[h][c], inv));
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
  const int group = static_cast<int>(heads / kv_heads);
  // Head sizes of Llama-family models: 64 (SmolLM2, TinyLlama), 128 (Llama, Qwen), 32.
  const bool wide = avx512 && (dim == 32 || dim == 64 || dim == 128) && group <= kMaxGroup;
  const float* q_at = qc.data_ptr<float>();
  float* out_at = out.data_ptr<float>();
  const float* k_at = k_cache.data_ptr<float>();
  const float* v_at = v_cache.data_ptr<float>();
  const int64_t slot_stride = kv_heads * dim;
  int64_t longest = 0;
  for (int64_t b = 0; b < batch; ++b) longest = std::max(longest, len_at[b]);
  // A task is one sequence's KV head. A batch-1 step is a few microseconds of work, which waking
  // a second thread would not pay back, so small steps stay on one.
  const int64_t grain = std::max<int64_t>(1, (1 << 17) / std::max<int64_t>(group * longest * dim, 1));
  at::parallel_for(0, batch * kv_heads, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(group * longest));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / kv_heads, kv = task % kv_heads;
      Group g{};
      g.size = group;
      for (int h = 0; h < group; ++h) {
        g.q[h] = q_at + (b * heads + kv * group + h) * dim;
        g.out[h] = out_at + (b * heads + kv * group + h) * dim;
      }
      g.k = k_at + kv * dim;
      g.v = v_at + kv * dim;
      g.slots = slot_at + b * width;
      g.len = len_at[b];
      const float sc = static_cast<float>(scale);
      if (wide && dim == 64) attend_avx512<4>(g, slot_stride, sc, scores.data());
      else if (wide && dim == 128) attend_avx512<8>(g, slot_stride, sc, scores.data());
      else if (wide) attend_avx512<2>(g, slot_stride, sc, scores.data());
      else attend_portable(g, dim, slot_stride, sc, scores.data());
    }
  });
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
