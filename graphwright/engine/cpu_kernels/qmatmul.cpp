// Quantized matmul for the engine's CPU decode steps: y = x @ W^T with W stored small and x
// quantized on the fly to int8 per block of 32 (d = max|x| / 127, q = round(x / d): GGUF's Q8_1).
//   4 bits (GGUF's Q4_1): per block of 32 weights  w = scale * code + min,  code in 0..15
//   8 bits: one scale per row,  w = scale * (code - 128)
// Per block the dot product is then exact in integers, e.g. for 4 bits
//   sum_i w_i x_i = scale_w * d_x * sum_i code_i q_i  +  min_w * (d_x * sum_i q_i)
// and AVX-512 VNNI computes 64 of those products per instruction (vpdpbusd: unsigned codes x
// signed q). This is how llama.cpp runs Q4_1 on a CPU; torch's weight-only kernels keep x in
// bfloat16 and run 2-3x slower here. Reference and tests: qmatmul.py, tests/engine/cpu_kernels/.
//
// Layouts (made by qmatmul.py):
//   x      float32 [M, K], K a multiple of 64
//   codes  uint8 [N, K/2] for 4 bits: per 64 weights, 32 bytes; byte j holds weight j in its low
//          nibble and weight 32+j in its high one (so one 256-bit load unpacks to 64 in order);
//          uint8 [N, K] for 8 bits
//   scales float16 [N, K/32] and mins float16 [N, K/32] for 4 bits (GGUF's Q4_1 stores the same);
//          float32 [N] for 8 bits, and no mins (the offset comes back out through x's block sums)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/inductor/aoti_torch/utils.h>
#include <torch/library.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

namespace {

constexpr int64_t kBlock = 32;
constexpr int kTile = 4;  // weight rows per inner loop: they share each load of x
constexpr int64_t kPrefetchTiles = 2;

// x's rows quantized per block of 32; sums[b] = d[b] * sum(q in block b), for the min term.
void quantize_rows(const float* x, int64_t blocks, int8_t* q, float* d, float* sums) {
  for (int64_t b = 0; b < blocks; ++b) {
    const float* xb = x + b * kBlock;
    float amax = 0.f;
    for (int64_t i = 0; i < kBlock; ++i) amax = std::max(amax, std::fabs(xb[i]));
    const float db = amax / 127.f;
    const float inv = db > 0.f ? 1.f / db : 0.f;
    int32_t total = 0;
    for (int64_t i = 0; i < kBlock; ++i) {
      const int32_t v = static_cast<int32_t>(std::nearbyint(xb[i] * inv));
      q[b * kBlock + i] = static_cast<int8_t>(v);
      total += v;
    }
    d[b] = db;
    sums[b] = db * static_cast<float>(total);
  }
}

struct Args {
  const uint8_t* codes;
  int64_t row_bytes;
  const void* scales;  // 4 bits: float16 [N, blocks]; 8 bits: float32 [N]
  const uint16_t* mins;  // 4 bits: float16 [N, blocks]
  int64_t blocks;  // per row: K / 32
  const int8_t* xq;
  const float* xd;
  const float* xs;
  float xs_total;  // sum of xs: the 8-bit codes' offset term, the same for every row
};

inline float half(uint16_t bits) { return static_cast<float>(c10::Half(bits, c10::Half::from_bits())); }

// Portable path (no VNNI): the same integer block sums, so the same numbers up to float rounding.
template <int Bits>
void rows_scalar(const Args& a, int64_t row, int rows, float* out) {
  for (int r = 0; r < rows; ++r) {
    const int64_t n = row + r;
    const uint8_t* w = a.codes + n * a.row_bytes;
    float total = 0.f;
    for (int64_t b = 0; b < a.blocks; ++b) {
      int32_t dot = 0;
      for (int64_t i = 0; i < kBlock; ++i) {
        const int64_t k = b * kBlock + i;
        int32_t code;
        if constexpr (Bits == 4) {
          const uint8_t byte = w[(k / 64) * 32 + (k % 32)];
          code = (k % 64) < 32 ? (byte & 0x0F) : (byte >> 4);
        } else {
          code = w[k];
        }
        dot += code * a.xq[k];
      }
      if constexpr (Bits == 4) {
        const uint16_t* s = static_cast<const uint16_t*>(a.scales) + n * a.blocks;
        total += half(s[b]) * a.xd[b] * static_cast<float>(dot) + half(a.mins[n * a.blocks + b]) * a.xs[b];
      } else {
        total += a.xd[b] * static_cast<float>(dot);
      }
    }
    if constexpr (Bits == 4) out[r] = total;
    else out[r] = static_cast<const float*>(a.scales)[n] * (total - 128.f * a.xs_total);
  }
}

#define GW_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")))

// Two blocks' per-block numbers, each repeated over its 8 lanes of int32 partial sums.
GW_VNNI inline __m512 pair_of(__m128 two) {
  const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(two));
}
GW_VNNI inline __m512 pair_of(const float* p) {
  return pair_of(_mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(p))));
}
GW_VNNI inline __m512 pair_of(const uint16_t* p) {
  return pair_of(_mm_cvtph_ps(_mm_cvtsi32_si128(*reinterpret_cast<const int32_t*>(p))));
}

template <int Bits, int Rows>
GW_VNNI void rows_vnni(const Args& a, int64_t row, float* out) {
  __m512 acc[Rows];
  for (int r = 0; r < Rows; ++r) acc[r] = _mm512_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const uint16_t* scales = static_cast<const uint16_t*>(a.scales);
  for (int64_t p = 0; p < a.blocks / 2; ++p) {  // 64 weights (two blocks) per step
    const __m512i xv = _mm512_loadu_si512(a.xq + p * 64);
    const __m512 dx = pair_of(a.xd + 2 * p);
    for (int r = 0; r < Rows; ++r) {
      const uint8_t* w = a.codes + (row + r) * a.row_bytes;
      if constexpr (Bits == 4) {
        const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + p * 32));
        const __m256i lo = _mm256_and_si256(packed, low4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4);
        const __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, xv);
        const __m512 scale = _mm512_mul_ps(pair_of(scales + (row + r) * a.blocks + 2 * p), dx);
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[r]);
      } else {  // one scale per row, applied at the end: per block only x's scale
        const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(w + p * 64), xv);
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), dx, acc[r]);
      }
    }
  }
  if constexpr (Bits == 4) {
    // The minimum term, sum_b min_b * (d_x sum q)_b, joins the same lanes: they are all summed below.
    for (int64_t b = 0; b < a.blocks; b += 16) {
      const __mmask16 live = a.blocks - b >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (a.blocks - b)) - 1);
      const __m512 xs = _mm512_maskz_loadu_ps(live, a.xs + b);
      for (int r = 0; r < Rows; ++r) {
        const __m256i m16 = _mm256_maskz_loadu_epi16(live, a.mins + (row + r) * a.blocks + b);
        acc[r] = _mm512_fmadd_ps(_mm512_cvtph_ps(m16), xs, acc[r]);
      }
    }
    for (int r = 0; r < Rows; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
  } else {
    const float* scales8 = static_cast<const float*>(a.scales);
    for (int r = 0; r < Rows; ++r) {
      out[r] = scales8[row + r] * (_mm512_reduce_add_ps(acc[r]) - 128.f * a.xs_total);
    }
  }
}

// quantize_rows with AVX-512: the same float32 operations, so the same integers.
GW_VNNI void quantize_rows_vnni(const float* x, int64_t blocks, int8_t* q, float* d, float* sums) {
  const __m512 sign = _mm512_set1_ps(-0.f);
  for (int64_t b = 0; b < blocks; ++b) {
    const __m512 x0 = _mm512_loadu_ps(x + b * kBlock), x1 = _mm512_loadu_ps(x + b * kBlock + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, x0), _mm512_andnot_ps(sign, x1)));
    const float db = amax / 127.f;
    const __m512 inv = _mm512_set1_ps(db > 0.f ? 1.f / db : 0.f);
    constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(x0, inv), kNearest));
    const __m512i q1 = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(x1, inv), kNearest));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * kBlock), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * kBlock + 16), _mm512_cvtsepi32_epi8(q1));
    d[b] = db;
    sums[b] = db * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)));
  }
}

bool has_vnni() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                          __builtin_cpu_supports("avx512vnni");
  return yes;
}

template <int Bits>
void rows_any(const Args& a, int64_t row, int rows, float* out, bool vnni) {
  if (!vnni) return rows_scalar<Bits>(a, row, rows, out);
  if (rows == kTile) return rows_vnni<Bits, kTile>(a, row, out);
  for (int r = 0; r < rows; ++r) rows_vnni<Bits, 1>(a, row + r, out + r);
}

at::Tensor q_matmul_with(const at::Tensor& x, const at::Tensor& codes, const at::Tensor& scales,
                         const at::Tensor& mins, int64_t bits, bool vnni) {
  TORCH_CHECK(bits == 4 || bits == 8, "q_matmul: bits must be 4 or 8, got ", bits);
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.device().is_cpu(),
              "q_matmul: x must be a 2-D float32 CPU tensor");
  TORCH_CHECK(codes.dim() == 2 && codes.scalar_type() == at::kByte, "q_matmul: codes must be 2-D uint8");
  const int64_t m = x.size(0), k = x.size(1), n = codes.size(0);
  TORCH_CHECK(k % 64 == 0, "q_matmul: K must be a multiple of 64, got ", k);
  TORCH_CHECK(codes.size(1) == (bits == 4 ? k / 2 : k), "q_matmul: codes are [", n, ", ", codes.size(1),
              "], which does not fit K = ", k, " at ", bits, " bits");
  const int64_t blocks = k / kBlock;
  if (bits == 4) {
    for (const auto* t : {&scales, &mins}) {
      TORCH_CHECK(t->scalar_type() == at::kHalf && t->dim() == 2 && t->size(0) == n && t->size(1) == blocks,
                  "q_matmul: 4-bit scales and mins must be float16 [", n, ", ", blocks, "]");
    }
  } else {
    TORCH_CHECK(scales.scalar_type() == at::kFloat && scales.dim() == 1 && scales.size(0) == n,
                "q_matmul: 8-bit scales must be float32 [", n, "] (one per row)");
  }
  const at::Tensor xc = x.contiguous(), cc = codes.contiguous();
  const at::Tensor sc = scales.contiguous(), mc = mins.contiguous();
  at::Tensor out = at::empty({m, n}, x.options());
  if (m == 0 || n == 0) return out;

  std::vector<int8_t> xq(m * k);
  std::vector<float> xd(m * blocks), xs(m * blocks);
  if (vnni) quantize_rows_vnni(xc.data_ptr<float>(), m * blocks, xq.data(), xd.data(), xs.data());
  else quantize_rows(xc.data_ptr<float>(), m * blocks, xq.data(), xd.data(), xs.data());
  std::vector<Args> rows_of_x(m);
  for (int64_t i = 0; i < m; ++i) {
    const float* xsi = xs.data() + i * blocks;
    rows_of_x[i] = Args{cc.data_ptr<uint8_t>(), cc.size(1), sc.data_ptr(),
                        bits == 4 ? static_cast<const uint16_t*>(mc.data_ptr()) : nullptr, blocks,
                        xq.data() + i * k, xd.data() + i * blocks, xsi, std::accumulate(xsi, xsi + blocks, 0.f)};
  }

  float* op = out.data_ptr<float>();
  const int64_t tiles = (n + kTile - 1) / kTile;
  // Small matrices stay on one thread: waking the other costs more than it saves.
  const int64_t grain = std::max<int64_t>(1, 8192 / (k * std::max<int64_t>(m, 1)) + 1);
  const int64_t tile_bytes = kTile * cc.size(1), tile_scale_bytes = bits == 4 ? kTile * blocks * 2 : 0;
  const char* codes_at = static_cast<const char*>(cc.data_ptr());
  const char* scales_at = static_cast<const char*>(sc.data_ptr());
  const char* mins_at = static_cast<const char*>(mc.data_ptr());
  at::parallel_for(0, tiles, grain, [&](int64_t begin, int64_t end) {
    float tile_out[kTile];
    for (int64_t t = begin; t < end; ++t) {  // a tile's weights stay in L1 across the rows of x
      // In a decode step the weights come from DRAM, and the hardware prefetcher alone leaves the
      // loads waiting: asking for the tile after next while this one computes took 10-20% off a
      // step here (an int4 step from 15.7 to 13.5 ms; 1 to 8 tiles ahead tried, 2 is best).
      if (t + kPrefetchTiles < end) {
        const int64_t ahead = t + kPrefetchTiles;
        for (int64_t o = 0; o < tile_bytes; o += 64) _mm_prefetch(codes_at + ahead * tile_bytes + o, _MM_HINT_T0);
        for (int64_t o = 0; o < tile_scale_bytes; o += 64) {
          _mm_prefetch(scales_at + ahead * tile_scale_bytes + o, _MM_HINT_T0);
          _mm_prefetch(mins_at + ahead * tile_scale_bytes + o, _MM_HINT_T0);
        }
      }
      const int64_t row = t * kTile;
      const int rows = static_cast<int>(std::min<int64_t>(kTile, n - row));
      for (int64_t i = 0; i < m; ++i) {
        if (bits == 4) rows_any<4>(rows_of_x[i], row, rows, tile_out, vnni);
        else rows_any<8>(rows_of_x[i], row, rows, tile_out, vnni);
        std::copy(tile_out, tile_out + rows, op + i * n + row);
      }
    }
  });
  return out;
}

at::Tensor q_matmul(const at::Tensor& x, const at::Tensor& codes, const at::Tensor& scales,
                    const at::Tensor& mins, int64_t bits) {
  return q_matmul_with(x, codes, scales, mins, bits, has_vnni());
}

// The portable loop on any CPU, so that the tests check it where VNNI is present too.
at::Tensor q_matmul_portable(const at::Tensor& x, const at::Tensor& codes, const at::Tensor& scales,
                             const at::Tensor& mins, int64_t bits) {
  return q_matmul_with(x, codes, scales, mins, bits, false);
}

int64_t q_matmul_vnni() { return has_vnni() ? 1 : 0; }

}  // namespace

TORCH_LIBRARY(graphwright, lib) {
  lib.def("q_matmul(Tensor x, Tensor codes, Tensor scales, Tensor mins, int bits) -> Tensor");
  lib.def("q_matmul_portable(Tensor x, Tensor codes, Tensor scales, Tensor mins, int bits) -> Tensor");
  lib.def("q_matmul_vnni() -> int");
  lib.impl("q_matmul", c10::DispatchKey::CPU, &q_matmul);
  lib.impl("q_matmul_portable", c10::DispatchKey::CPU, &q_matmul_portable);
  lib.impl("q_matmul_vnni", c10::DispatchKey::CompositeExplicitAutograd, &q_matmul_vnni);
}

// The same op as a C function for Inductor's generated C++ (compiled.py names it in
// custom_ops_to_c_shims): called directly, not looked up by name in the dispatcher at every call.
extern "C" AOTITorchError aoti_torch_cpu_q_matmul(AtenTensorHandle x, AtenTensorHandle codes, AtenTensorHandle scales,
                                                  AtenTensorHandle mins, int64_t bits, AtenTensorHandle* out) {
  using torch::aot_inductor::tensor_handle_to_tensor_pointer;
  AOTI_TORCH_CONVERT_EXCEPTION_TO_ERROR_CODE({
    *out = torch::aot_inductor::new_tensor_handle(
        q_matmul(*tensor_handle_to_tensor_pointer(x), *tensor_handle_to_tensor_pointer(codes),
                 *tensor_handle_to_tensor_pointer(scales), *tensor_handle_to_tensor_pointer(mins), bits));
  });
}
