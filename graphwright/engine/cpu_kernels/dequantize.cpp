// A 4-bit weight (qmatmul.cpp's layout) widened to bfloat16 for a prompt's matmul: a prompt is
// compute-bound, so it runs on the AMX/AVX-512 bf16 matmul, and this widening is what it waits for
// first. torch ops (codes to float, times scale, plus min, to bfloat16) took ~0.25 s for SmolLM2's
// weights here, whatever the prompt's length; one pass over the codes takes a small part of that.
// Each weight is computed in float32 (scale * code + min, one fused rounding) and then rounded to
// the nearest bfloat16. Reference and tests: qmatmul.py (dequantize), tests/engine/cpu_kernels/.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <torch/library.h>

#include <immintrin.h>

#include <cmath>
#include <cstdint>

namespace {

constexpr int64_t kBlock = 32;

void row_portable(const uint8_t* codes, const c10::Half* scales, const c10::Half* mins, int64_t k,
                  c10::BFloat16* out) {
  for (int64_t i = 0; i < k; ++i) {
    const uint8_t byte = codes[(i / 64) * 32 + (i % 32)];
    const int code = (i % 64) < 32 ? (byte & 0x0F) : (byte >> 4);
    const int64_t b = i / kBlock;
    out[i] = c10::BFloat16(std::fma(static_cast<float>(scales[b]), static_cast<float>(code),
                                    static_cast<float>(mins[b])));
  }
}

#define GW_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,f16c")))

GW_BF16 void row_avx512(const uint8_t* codes, const c10::Half* scales, const c10::Half* mins, int64_t k,
                        c10::BFloat16* out) {
  const __m128i low4 = _mm_set1_epi8(0x0F);
  for (int64_t p = 0; p < k / 64; ++p) {  // 32 bytes: codes p*64 .. p*64+63
    const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + p * 32));
    const __m128i halves[2] = {_mm256_castsi256_si128(packed), _mm256_extracti128_si256(packed, 1)};
    for (int hi = 0; hi < 2; ++hi) {  // low nibbles: block 2p; high nibbles: block 2p + 1
      const int64_t b = 2 * p + hi;
      const __m512 scale = _mm512_set1_ps(static_cast<float>(scales[b]));
      const __m512 min = _mm512_set1_ps(static_cast<float>(mins[b]));
      for (int j = 0; j < 2; ++j) {  // 16 codes from each 16-byte half
        const __m128i bytes = hi ? _mm_and_si128(_mm_srli_epi16(halves[j], 4), low4) : _mm_and_si128(halves[j], low4);
        const __m512 w = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes)), scale, min);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + b * kBlock + j * 16), (__m256i)_mm512_cvtneps_pbh(w));
      }
    }
  }
}

bool has_avx512_bf16() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
  return yes;
}

at::Tensor dequantize_with(const at::Tensor& codes, const at::Tensor& scales, const at::Tensor& mins,
                           bool fast) {
  TORCH_CHECK(codes.dim() == 2 && codes.scalar_type() == at::kByte, "q_dequantize: codes must be 2-D uint8");
  const int64_t n = codes.size(0), k = codes.size(1) * 2;
  for (const auto* t : {&scales, &mins}) {
    TORCH_CHECK(t->scalar_type() == at::kHalf && t->dim() == 2 && t->size(0) == n && t->size(1) == k / kBlock,
                "q_dequantize: scales and mins must be float16 [", n, ", ", k / kBlock, "]");
  }
  TORCH_CHECK(k % 64 == 0, "q_dequantize: K must be a multiple of 64, got ", k);
  const at::Tensor cc = codes.contiguous(), sc = scales.contiguous(), mc = mins.contiguous();
  at::Tensor out = at::empty({n, k}, codes.options().dtype(at::kBFloat16));
  const uint8_t* cp = cc.data_ptr<uint8_t>();
  const c10::Half* sp = sc.data_ptr<c10::Half>();
  const c10::Half* mp = mc.data_ptr<c10::Half>();
  c10::BFloat16* op = out.data_ptr<c10::BFloat16>();
  at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t blocks = k / kBlock;
      if (fast) row_avx512(cp + r * k / 2, sp + r * blocks, mp + r * blocks, k, op + r * k);
      else row_portable(cp + r * k / 2, sp + r * blocks, mp + r * blocks, k, op + r * k);
    }
  });
  return out;
}

at::Tensor q_dequantize(const at::Tensor& codes, const at::Tensor& scales, const at::Tensor& mins) {
  return dequantize_with(codes, scales, mins, has_avx512_bf16());
}

at::Tensor q_dequantize_portable(const at::Tensor& codes, const at::Tensor& scales, const at::Tensor& mins) {
  return dequantize_with(codes, scales, mins, false);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(graphwright, lib) {
  lib.def("q_dequantize(Tensor codes, Tensor scales, Tensor mins) -> Tensor");
  lib.def("q_dequantize_portable(Tensor codes, Tensor scales, Tensor mins) -> Tensor");
  lib.impl("q_dequantize", c10::DispatchKey::CPU, &q_dequantize);
  lib.impl("q_dequantize_portable", c10::DispatchKey::CPU, &q_dequantize_portable);
}
