/* Whisper's decoder logits over int8 weights in blocks of 32 (backends/onnx/kernel.py).

   logits (M, N) = x (M, K) times the tied token embedding as ONNX Runtime's MatMulNBits holds
   it (8 bits, zero point 128, one float32 scale per 32 inputs), computed as its accuracy
   level 4 does: each row's x quantized to int8 per block of 32 (scale = max |x| / 127), int32
   dot products per block (VPDPBUSD: weights as the unsigned operand, so the zero point is
   one correction per row and block), scaled by both scales into float32. The weights are read
   once per 8 rows in the panels ``to_logit_panels`` lays out: (N/16, K/32, 8, 16, 4) bytes, a
   block of 16 outputs by 32 inputs in 512 bytes. ONNX Runtime's kernel takes about 2 ms for 8
   rows of tiny's 51864 x 384; this one reads the 20 MB of weights at memory speed.
   Needs AVX512_VNNI; elsewhere logits_supported() says 0 and the graph computes the logits.

   cc -O3 -ffast-math -fopenmp -shared -fPIC logits_int8.c -o logits.so -lm */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 8 /* rows per pass over the weights */

#if defined(__x86_64__)
#include <immintrin.h>
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

int logits_supported(void) {
    return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vnni");
}

/* one row of x -> int8 per block of 32 (round to nearest even), the blocks' scales, and
   -128 * the sum of each block's int8 values (the weights' zero point, corrected once) */
static void quantize_row(const float* x, int K, int8_t* q, float* scale, int32_t* corr) {
    for (int b = 0; b < K / 32; b++) {
        float top = 0.f;
        for (int k = 0; k < 32; k++) top = fmaxf(top, fabsf(x[b * 32 + k]));
        float s = top / 127.f, inv = top > 0.f ? 127.f / top : 0.f;
        int32_t sum = 0;
        for (int k = 0; k < 32; k++) {
            int v = (int)nearbyintf(x[b * 32 + k] * inv);
            v = v > 127 ? 127 : v < -127 ? -127 : v;
            q[b * 32 + k] = (int8_t)v;
            sum += v;
        }
        scale[b] = s;
        corr[b] = -128 * sum;
    }
}

/* R rows (quantized) by the 16 outputs of one panel column, over every block of K; R is a
   constant of each copy (8, 4 or 1: as many as the rows) so the accumulators stay in registers */
#define PANEL(NAME, R)                                                                              \
    VNNI static void NAME(const int8_t* q, const float* qs, const int32_t* qc, const uint8_t* w,    \
                          const float* ws, float* out, int N, int n0, int K, int rows) {            \
        int B = K / 32;                                                                             \
        __m512 acc[R];                                                                              \
        for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();                                   \
        for (int b = 0; b < B; b++) {                                                               \
            const uint8_t* wb = w + (size_t)b * 512;                                                \
            __m512 scale = _mm512_loadu_ps(ws + (size_t)b * 16);                                    \
            __m512i dot[R];                                                                         \
            for (int r = 0; r < R; r++) dot[r] = _mm512_set1_epi32(qc[r * B + b]);                  \
            for (int g = 0; g < 8; g++) {                                                           \
                __m512i wv = _mm512_loadu_si512(wb + 64 * g);                                       \
                for (int r = 0; r < R; r++) {                                                       \
                    int32_t qr = *(const int32_t*)(q + (size_t)r * K + b * 32 + 4 * g);             \
                    dot[r] = _mm512_dpbusd_epi32(dot[r], wv, _mm512_set1_epi32(qr));                \
                }                                                                                   \
            }                                                                                       \
            for (int r = 0; r < R; r++) {                                                           \
                __m512 rs = _mm512_mul_ps(scale, _mm512_set1_ps(qs[r * B + b]));                    \
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r]), rs, acc[r]);                   \
            }                                                                                       \
        }                                                                                           \
        __mmask16 m = N - n0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (N - n0)) - 1);        \
        for (int r = 0; r < rows; r++) _mm512_mask_storeu_ps(out + (size_t)r * N + n0, m, acc[r]);  \
    }
PANEL(panel8, ROWS)
PANEL(panel4, 4)
PANEL(panel1, 1)

/* x (M, K) float32, K a multiple of 32; w panels (ceil(N/16), K/32, 8, 16, 4) uint8; ws
   (ceil(N/16), K/32, 16) float32 -> out (M, N) float32 */
VNNI void logits(const float* x, int M, int K, const uint8_t* w, const float* ws, float* out, int N,
                 int threads) {
    int B = K / 32, NB = (N + 15) / 16;
    int8_t* q = calloc((size_t)ROWS * K, 1);
    float* qs = calloc((size_t)ROWS * B, sizeof(float));
    int32_t* qc = calloc((size_t)ROWS * B, sizeof(int32_t));
    for (int m0 = 0; m0 < M; m0 += ROWS) {
        int rows = M - m0 < ROWS ? M - m0 : ROWS;
        memset(q, 0, (size_t)ROWS * K);
        memset(qs, 0, (size_t)ROWS * B * sizeof(float));
        memset(qc, 0, (size_t)ROWS * B * sizeof(int32_t));
        for (int r = 0; r < rows; r++)
            quantize_row(x + (size_t)(m0 + r) * K, K, q + (size_t)r * K, qs + r * B, qc + r * B);
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int nb = 0; nb < NB; nb++)
            (rows == 1 ? panel1 : rows <= 4 ? panel4 : panel8)(
                q, qs, qc, w + (size_t)nb * B * 512, ws + (size_t)nb * B * 16, out + (size_t)m0 * N,
                N, nb * 16, K, rows);
    }
    free(q);
    free(qs);
    free(qc);
}

#else
int logits_supported(void) { return 0; }
void logits(const float* x, int M, int K, const uint8_t* w, const float* ws, float* out, int N, int threads) {}
#endif
