/* Whisper's decoder cross-attention over float16 or int8 keys and values (backends/onnx/kernel.py).

   softmax(q K^T) V for every (row, head): q (BH, T, D) float32, already scaled; keys as panels of
   16 (BH, ceil(S/16), D, 16) float16 so a block of 16 scores reads 2 KB in order; values
   (BH, S, D) float16. Scores (BH, T, S) are written too (word timestamps read them). Keys and
   values are read once per (row, head) and widened to float32 in registers (F16C), so the step
   reads half the bytes of ONNX Runtime's float32 MatMul + Softmax + MatMul, whose float16 paths
   widen to float32 in memory first (tools/bench_cross_attention.py). AVX-512 only; elsewhere
   xattn_supported() says 0 and the decoder graph computes the attention itself.

   int8 (xattn_i8): each key and each value row of a head quantized symmetrically over its dh
   numbers (scale max|x| / 127; xquant_k, xquant_v from the cross_kv graph's float32), the scale
   stored after the numbers: a key panel is (dh + 4, 16) bytes, its last 64 the 16 keys' float32
   scales; a value row dh + 4 bytes. A step then reads half the bytes again; the scores take
   each key's scale once, the softmax weights each value row's.

   cc -O3 -ffast-math -fopenmp -shared -fPIC cross_attention.c -o xattn.so -lm
   (OMP_WAIT_POLICY=PASSIVE: idle workers must not spin on the cores ONNX Runtime needs next) */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#include "exp512.h"
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

int xattn_supported(void) { return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"); }

/* 16 keys' or values' numbers widened to float32 in registers */
#define WIDEN16(ptr) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(ptr)))
#define WIDEN8(ptr) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(ptr))))

/* scores[t, j] = sum_d q[t, d] k[j, d], up to 8 query rows per pass over each panel of 16 keys
   (a step has one; a prompt's piece 48: each panel widened once per 8 rows). Keys of TYPE,
   WIDEN'd; SCALED (int8): each key's float32 scale follows the panel's D rows and multiplies
   its score. */
#define SCORES(NAME, R, TYPE, WIDEN, SCALED)                                                        \
    AVX512 static void NAME(const float* q, const TYPE* panel, float* s, int D, int S, int p,      \
                            int nt) {                                                               \
        __m512 acc[R];                                                                              \
        for (int t = 0; t < R; t++) acc[t] = _mm512_setzero_ps();                                   \
        for (int d = 0; d < D; d++) {                                                               \
            __m512 kd = WIDEN(panel + d * 16);                                                      \
            for (int t = 0; t < R; t++)                                                             \
                acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)t * D + d]), kd, acc[t]);         \
        }                                                                                           \
        if (SCALED) {                                                                               \
            __m512 scale = _mm512_loadu_ps((const float*)(panel + D * 16));                        \
            for (int t = 0; t < nt; t++) acc[t] = _mm512_mul_ps(acc[t], scale);                    \
        }                                                                                           \
        int left = S - p * 16;                                                                      \
        __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);               \
        for (int t = 0; t < nt; t++) _mm512_mask_storeu_ps(s + (size_t)t * S + p * 16, m, acc[t]);  \
    }

/* every query row's scores, 8 rows at a time (the last rows of a prompt's piece padded with
   zeros, D <= 256), over panels of PANEL elements of TYPE */
#define SCORE_ROWS(NAME, TYPE, PANEL, ONE, EIGHT)                                                   \
    AVX512 static void NAME(const float* q, const TYPE* k, float* s, int T, int D, int S) {        \
        int panels = (S + 15) / 16;                                                                 \
        float padded[8 * 256];                                                                      \
        for (int t0 = 0; t0 < T; t0 += 8) {                                                         \
            int nt = T - t0 < 8 ? T - t0 : 8;                                                       \
            const float* qt = q + (size_t)t0 * D;                                                   \
            if (nt > 1 && nt < 8) {                                                                 \
                memset(padded, 0, sizeof(float) * 8 * D);                                           \
                memcpy(padded, qt, sizeof(float) * nt * D);                                         \
                qt = padded;                                                                        \
            }                                                                                       \
            float* st = s + (size_t)t0 * S;                                                         \
            for (int p = 0; p < panels; p++) {                                                      \
                const TYPE* panel = k + (size_t)p * (PANEL);                                        \
                if (nt == 1) ONE(qt, panel, st, D, S, p, 1);                                        \
                else EIGHT(qt, panel, st, D, S, p, nt);                                             \
            }                                                                                       \
        }                                                                                           \
    }

SCORES(scores8, 8, uint16_t, WIDEN16, 0)
SCORES(scores1, 1, uint16_t, WIDEN16, 0)
SCORE_ROWS(scores, uint16_t, (size_t)D * 16, scores1, scores8)

/* a row of scores -> its softmax weights */
AVX512 static void softmax(const float* s, float* w, int S) {
    __m512 top = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
    for (int j = 0; j < S; j += 16) {
        __mmask16 m = S - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (S - j)) - 1);
        top = _mm512_mask_max_ps(top, m, top, _mm512_maskz_loadu_ps(m, s + j));
    }
    __m512 peak = _mm512_set1_ps(_mm512_reduce_max_ps(top));
    for (int j = 0; j < S; j += 16) {
        __mmask16 m = S - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (S - j)) - 1);
        __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j), peak)));
        sum = _mm512_add_ps(sum, e);
        _mm512_mask_storeu_ps(w + j, m, e);
    }
    __m512 r = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(sum));
    for (int j = 0; j < S; j += 16) {
        __mmask16 m = S - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (S - j)) - 1);
        _mm512_mask_storeu_ps(w + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w + j), r));
    }
}

/* out[t, :] = sum_j w[t, j] v[j, :] for nt <= 4 rows (each value row widened once for all),
   D a multiple of 16 (64 for every Whisper size); value rows of ROW elements of TYPE, WIDEN'd;
   SCALED (int8): each row's float32 scale follows its D numbers and multiplies its weights */
#define CONTEXT(NAME, TYPE, ROW, WIDEN, SCALED)                                                     \
    AVX512 static void NAME(const float* w, const TYPE* v, float* out, int D, int S, int nt) {     \
        for (int d0 = 0; d0 < D; d0 += 64) {                                                        \
            int nd = D - d0 < 64 ? (D - d0) / 16 : 4;                                               \
            __m512 acc[4][4];                                                                       \
            for (int t = 0; t < 4; t++)                                                             \
                for (int c = 0; c < 4; c++) acc[t][c] = _mm512_setzero_ps();                        \
            for (int j = 0; j < S; j++) {                                                           \
                const TYPE* row = v + (size_t)j * (ROW);                                            \
                float scale = 1.f;                                                                  \
                if (SCALED) memcpy(&scale, row + D, sizeof scale);                                  \
                __m512 wj[4];                                                               \
                for (int t = 0; t < nt; t++)                                                        \
                    wj[t] = _mm512_set1_ps(SCALED ? w[(size_t)t * S + j] * scale : w[(size_t)t * S + j]); \
                for (int c = 0; c < nd; c++) {                                                      \
                    __m512 vj = WIDEN(row + d0 + 16 * c);                                           \
                    for (int t = 0; t < nt; t++) acc[t][c] = _mm512_fmadd_ps(wj[t], vj, acc[t][c]); \
                }                                                                                   \
            }                                                                                       \
            for (int t = 0; t < nt; t++)                                                            \
                for (int c = 0; c < nd; c++)                                                        \
                    _mm512_storeu_ps(out + (size_t)t * D + d0 + 16 * c, acc[t][c]);                 \
        }                                                                                           \
    }

CONTEXT(context, uint16_t, (size_t)D, WIDEN16, 0)

/* work: (BH, T, S) floats of scratch for the softmax's weights; it may be s itself (the scores are
   then overwritten by the weights, when no one reads them) */
void xattn(const float* q, const uint16_t* k, const uint16_t* v, float* out, float* s, float* work,
           int BH, int T, int D, int S, int threads) {
    size_t kstride = (size_t)((S + 15) / 16) * 16 * D;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int u = 0; u < BH; u++) {
        const float* qu = q + (size_t)u * T * D;
        float* su = s + (size_t)u * T * S;
        float* wu = work + (size_t)u * T * S;
        scores(qu, k + u * kstride, su, T, D, S);
        for (int t = 0; t < T; t++) softmax(su + (size_t)t * S, wu + (size_t)t * S, S);
        for (int t = 0; t < T; t += 4)
            context(wu + (size_t)t * S, v + (size_t)u * S * D, out + ((size_t)u * T + t) * D, D, S,
                    T - t < 4 ? T - t : 4);
    }
}

#include "cross_attention_int8.h"

#else
int xattn_supported(void) { return 0; }
void xattn(const float* q, const uint16_t* k, const uint16_t* v, float* out, float* s, float* work,
           int BH, int T, int D, int S, int threads) {
    (void)q; (void)k; (void)v; (void)out; (void)s; (void)work; (void)BH; (void)T; (void)D; (void)S;
    (void)threads;
}
void xattn_i8(const float* q, const int8_t* k, const int8_t* v, float* out, float* s, float* work,
              int BH, int T, int D, int S, int threads, uint8_t* scratch) {
    (void)q; (void)k; (void)v; (void)out; (void)s; (void)work; (void)BH; (void)T; (void)D; (void)S;
    (void)threads; (void)scratch;
}
size_t xattn_scratch(int D, int S, int threads) { (void)D; (void)S; (void)threads; return 0; }
void xquant_k(const float* k, int8_t* out, size_t n, int D, int S) { (void)k; (void)out; (void)n; (void)D; (void)S; }
void xquant_v(const float* v, int8_t* out, size_t n, int D) { (void)v; (void)out; (void)n; (void)D; }
#endif
