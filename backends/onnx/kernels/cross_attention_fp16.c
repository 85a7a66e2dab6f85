/* Whisper's decoder cross-attention over float16 keys and values (backends/onnx/kernel.py).

   softmax(q K^T) V for every (row, head): q (BH, T, D) float32, already scaled; keys as panels of
   16 (BH, ceil(S/16), D, 16) float16 so a block of 16 scores reads 2 KB in order; values
   (BH, S, D) float16. Scores (BH, T, S) are written too (word timestamps read them). Keys and
   values are read once per (row, head) and widened to float32 in registers (F16C), so the step
   reads half the bytes of ONNX Runtime's float32 MatMul + Softmax + MatMul, whose float16 paths
   widen to float32 in memory first (tools/bench_cross_attention.py). AVX-512 only; elsewhere
   xattn_supported() says 0 and the decoder graph computes the attention itself.

   cc -O3 -ffast-math -fopenmp -shared -fPIC cross_attention_fp16.c -o xattn.so -lm
   (OMP_WAIT_POLICY=PASSIVE: idle workers must not spin on the cores ONNX Runtime needs next) */
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

int xattn_supported(void) { return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"); }

/* scores[t, j] = sum_d q[t, d] k[j, d], four query rows at a time over each panel of 16 keys */
AVX512 static void scores(const float* q, const uint16_t* k, float* s, int T, int D, int S) {
    int panels = (S + 15) / 16;
    for (int t0 = 0; t0 < T; t0 += 4) {
        int nt = T - t0 < 4 ? T - t0 : 4;
        for (int p = 0; p < panels; p++) {
            const uint16_t* panel = k + (size_t)p * D * 16;
            __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (int d = 0; d < D; d++) {
                __m512 kd = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(panel + d * 16)));
                for (int t = 0; t < nt; t++)
                    acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)(t0 + t) * D + d]), kd, acc[t]);
            }
            int left = S - p * 16;
            __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
            for (int t = 0; t < nt; t++) _mm512_mask_storeu_ps(s + (size_t)(t0 + t) * S + p * 16, m, acc[t]);
        }
    }
}

static void softmax(const float* s, float* w, int S) {
    float top = -INFINITY, sum = 0.f;
    for (int j = 0; j < S; j++) top = s[j] > top ? s[j] : top;
    for (int j = 0; j < S; j++) { w[j] = expf(s[j] - top); sum += w[j]; }
    float r = 1.f / sum;
    for (int j = 0; j < S; j++) w[j] *= r;
}

/* out[t, :] = sum_j w[t, j] v[j, :], D a multiple of 16 (64 for every Whisper size) */
AVX512 static void context(const float* w, const uint16_t* v, float* out, int D, int S) {
    for (int d0 = 0; d0 < D; d0 += 64) {
        int nd = D - d0 < 64 ? (D - d0) / 16 : 4;
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int j = 0; j < S; j++) {
            __m512 wj = _mm512_set1_ps(w[j]);
            const uint16_t* row = v + (size_t)j * D + d0;
            for (int c = 0; c < nd; c++)
                acc[c] = _mm512_fmadd_ps(wj, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(row + 16 * c))), acc[c]);
        }
        for (int c = 0; c < nd; c++) _mm512_storeu_ps(out + d0 + 16 * c, acc[c]);
    }
}

/* work: (BH, T, S) floats of scratch for the softmax's weights */
void xattn(const float* q, const uint16_t* k, const uint16_t* v, float* out, float* s, float* work,
           int BH, int T, int D, int S, int threads) {
    size_t kstride = (size_t)((S + 15) / 16) * 16 * D;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int u = 0; u < BH; u++) {
        const float* qu = q + (size_t)u * T * D;
        float* su = s + (size_t)u * T * S;
        float* wu = work + (size_t)u * T * S;
        scores(qu, k + u * kstride, su, T, D, S);
        for (int t = 0; t < T; t++) {
            softmax(su + (size_t)t * S, wu + (size_t)t * S, S);
            context(wu + (size_t)t * S, v + (size_t)u * S * D, out + ((size_t)u * T + t) * D, D, S);
        }
    }
}
#else
int xattn_supported(void) { return 0; }
void xattn(const float* q, const uint16_t* k, const uint16_t* v, float* out, float* s, float* work,
           int BH, int T, int D, int S, int threads) {
    (void)q; (void)k; (void)v; (void)out; (void)s; (void)work; (void)BH; (void)T; (void)D; (void)S;
    (void)threads;
}
#endif
