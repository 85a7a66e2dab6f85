/* Whisper's encoder self-attention in bfloat16 (backends/onnx/kernel.py).

   softmax(q k^T) v for every (window, head): q, k, v (B, T, H*D) float32 as the encoder's
   projections leave them (the scale already folded into q and k), out (B, T, H*D) float32.
   Each head's q, k and v are rounded to bfloat16 and laid out for VDPBF16PS (two products
   per float32 lane): keys as panels of 16 keys by D/2 pairs, values as pairs of keys by 16
   dims. Products accumulate in float32, the softmax is float32, and its weights are rounded
   to bfloat16 for the second product. That is twice the arithmetic per instruction of
   ONNX Runtime's float32 MultiHeadAttention, which is most of the encoder's time on a CPU.
   Needs AVX512_BF16 (Zen 4, Sapphire Rapids and later); elsewhere sattn_supported() says 0
   and the encoder graph computes the attention itself.

   cc -O3 -ffast-math -fopenmp -shared -fPIC self_attention_bf16.c -o sattn.so -lm */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 8 /* query rows per block */

#if defined(__x86_64__)
#include <immintrin.h>
#include "exp512.h"
#define BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

int sattn_supported(void) {
    return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bf16");
}

/* 16 float32 -> bfloat16 (round to nearest even) in the low 16 bits of each lane */
BF16 static inline __m512i bf16_low(__m512 x) {
    __m512i u = _mm512_castps_si512(x);
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    u = _mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
    return _mm512_srli_epi32(u, 16);
}

/* pairs[i] = (x[2i], x[2i+1]) as bfloat16, for a row of D float32 (D a multiple of 32) */
BF16 static void row_pairs(const float* x, uint32_t* pairs, int D) {
    for (int d = 0; d < D; d += 32) {
        __m512bh b = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + d + 16), _mm512_loadu_ps(x + d));
        _mm512_storeu_si512(pairs + d / 2, (__m512i)b);
    }
}

/* keys (T rows, stride ld) -> panels[p][i][j] = pair i of key 16p+j, zero past T */
BF16 static void pack_keys(const float* k, int ld, uint32_t* panels, int T, int D) {
    uint32_t row[64];
    int P = (T + 15) / 16;
    memset(panels, 0, (size_t)P * 16 * (D / 2) * 4);
    for (int t = 0; t < T; t++) {
        row_pairs(k + (size_t)t * ld, row, D);
        uint32_t* panel = panels + (size_t)(t / 16) * (D / 2) * 16 + t % 16;
        for (int i = 0; i < D / 2; i++) panel[i * 16] = row[i];
    }
}

/* values (T rows, stride ld) -> pairs[j][c][l] = (v[2j][16c+l], v[2j+1][16c+l]), zero past T */
BF16 static void pack_values(const float* v, int ld, uint32_t* pairs, int T, int D) {
    int J = (T + 1) / 2;
    for (int j = 0; j < J; j++) {
        const float* a = v + (size_t)(2 * j) * ld;
        const float* b = 2 * j + 1 < T ? a + ld : NULL;
        for (int c = 0; c < D / 16; c++) {
            __m512i lo = bf16_low(_mm512_loadu_ps(a + 16 * c));
            __m512i hi = b ? _mm512_slli_epi32(bf16_low(_mm512_loadu_ps(b + 16 * c)), 16) : _mm512_setzero_si512();
            _mm512_storeu_si512(pairs + ((size_t)j * (D / 16) + c) * 16, _mm512_or_si512(lo, hi));
        }
    }
}

/* s[r][16p..] = q_r . keys of panel p, ROWS query rows (as pairs) by two panels at a time */
BF16 static void block_scores(const uint32_t* q, const uint32_t* panels, float* s, int P, int D, int ld) {
    int H = D / 2;
    for (int p = 0; p < P; p += 2) {
        int two = p + 1 < P;
        const uint32_t* k0 = panels + (size_t)p * H * 16;
        const uint32_t* k1 = two ? k0 + H * 16 : k0;
        __m512 a0[ROWS], a1[ROWS];
        for (int r = 0; r < ROWS; r++) a0[r] = a1[r] = _mm512_setzero_ps();
        for (int i = 0; i < H; i++) {
            __m512bh x0 = (__m512bh)_mm512_loadu_si512(k0 + i * 16);
            __m512bh x1 = (__m512bh)_mm512_loadu_si512(k1 + i * 16);
            for (int r = 0; r < ROWS; r++) {
                __m512bh qr = (__m512bh)_mm512_set1_epi32((int)q[r * H + i]);
                a0[r] = _mm512_dpbf16_ps(a0[r], qr, x0);
                a1[r] = _mm512_dpbf16_ps(a1[r], qr, x1);
            }
        }
        for (int r = 0; r < ROWS; r++) {
            _mm512_storeu_ps(s + (size_t)r * ld + p * 16, a0[r]);
            if (two) _mm512_storeu_ps(s + (size_t)r * ld + p * 16 + 16, a1[r]);
        }
    }
}

/* a row of scores -> its softmax weights, unnormalised, as bfloat16 pairs (zero past T);
   returns 1 / their sum */
BF16 static float row_weights(const float* s, uint32_t* w, int T, int J) {
    __m512 top = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
    for (int t = 0; t < T; t += 16) {
        __mmask16 m = T - t >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (T - t)) - 1);
        top = _mm512_mask_max_ps(top, m, top, _mm512_maskz_loadu_ps(m, s + t));
    }
    __m512 peak = _mm512_set1_ps(_mm512_reduce_max_ps(top));
    for (int t = 0; t < 2 * J; t += 32) {
        __mmask16 m0 = T - t >= 16 ? (__mmask16)0xFFFF : T > t ? (__mmask16)((1u << (T - t)) - 1) : 0;
        __mmask16 m1 = T - t >= 32 ? (__mmask16)0xFFFF : T > t + 16 ? (__mmask16)((1u << (T - t - 16)) - 1) : 0;
        __m512 e0 = _mm512_maskz_mov_ps(m0, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m0, s + t), peak)));
        __m512 e1 = _mm512_maskz_mov_ps(m1, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m1, s + t + 16), peak)));
        sum = _mm512_add_ps(sum, _mm512_add_ps(e0, e1));
        __m512i b = (__m512i)_mm512_cvtne2ps_pbh(e1, e0);
        if (t + 32 <= 2 * J) _mm512_storeu_si512(w + t / 2, b);
        else _mm512_mask_storeu_epi32(w + t / 2, (__mmask16)((1u << ((2 * J - t) / 2)) - 1), b);
    }
    return 1.0f / _mm512_reduce_add_ps(sum);
}

/* out rows = weights . values, ROWS rows by two blocks of 16 dims at a time, scaled by 1/sum */
BF16 static void block_context(const uint32_t* w, int lw, const uint32_t* pairs, const float* inv,
                               float* out, int ld, int rows, int J, int D) {
    int C = D / 16;
    for (int c = 0; c < C; c += 2) {
        __m512 a0[ROWS], a1[ROWS];
        for (int r = 0; r < ROWS; r++) a0[r] = a1[r] = _mm512_setzero_ps();
        for (int j = 0; j < J; j++) {
            const uint32_t* vj = pairs + ((size_t)j * C + c) * 16;
            __m512bh x0 = (__m512bh)_mm512_loadu_si512(vj);
            __m512bh x1 = (__m512bh)_mm512_loadu_si512(vj + 16);
            for (int r = 0; r < ROWS; r++) {
                __m512bh wr = (__m512bh)_mm512_set1_epi32((int)w[(size_t)r * lw + j]);
                a0[r] = _mm512_dpbf16_ps(a0[r], wr, x0);
                a1[r] = _mm512_dpbf16_ps(a1[r], wr, x1);
            }
        }
        for (int r = 0; r < rows; r++) {
            __m512 scale = _mm512_set1_ps(inv[r]);
            _mm512_storeu_ps(out + (size_t)r * ld + 16 * c, _mm512_mul_ps(a0[r], scale));
            _mm512_storeu_ps(out + (size_t)r * ld + 16 * c + 16, _mm512_mul_ps(a1[r], scale));
        }
    }
}

static size_t up64(size_t n) { return (n + 63) & ~(size_t)63; }

/* the sizes of a call's scratch: the packed heads, and each thread's scores and weights */
static void sizes(int B, int T, int H, int D, size_t* packed, size_t* per_thread, int* S) {
    int P = (T + 15) / 16, J = (T + 1) / 2, Q = (T + ROWS - 1) / ROWS;
    *S = ((P * 16 > 2 * J ? P * 16 : 2 * J) + 31) & ~31;
    size_t per_head = (size_t)P * 16 * (D / 2) + (size_t)J * D + (size_t)Q * ROWS * (D / 2);
    *packed = up64((size_t)B * H * per_head * 4);
    *per_thread = up64((size_t)ROWS * *S * 4) + up64((size_t)ROWS * *S * 2);
}

/* bytes of scratch ``sattn`` needs (the caller keeps it between calls: no allocation here) */
size_t sattn_scratch(int B, int T, int H, int D, int threads) {
    size_t packed, per_thread;
    int S;
    sizes(B, T, H, D, &packed, &per_thread, &S);
    return 64 + packed + (size_t)threads * per_thread;
}

/* q, k, v, out: (B, T, H*D) float32; D a multiple of 32 and at most 128 (64 for Whisper);
   scratch: sattn_scratch(B, T, H, D, threads) bytes */
BF16 void sattn(const float* q, const float* k, const float* v, float* out, int B, int T, int H,
                int D, int threads, void* scratch) {
    size_t packed_bytes, per_thread;
    int S;
    sizes(B, T, H, D, &packed_bytes, &per_thread, &S);
    int ld = H * D, P = (T + 15) / 16, J = (T + 1) / 2, half = D / 2;
    int Q = (T + ROWS - 1) / ROWS;
    size_t kn = (size_t)P * 16 * half, vn = (size_t)J * D, qn = (size_t)Q * ROWS * half;
    uint8_t* base = (uint8_t*)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    uint32_t* packed = (uint32_t*)base;
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            size_t at = (size_t)(bh / H) * T * ld + (size_t)(bh % H) * D;
            uint32_t* head = packed + (size_t)bh * (kn + vn + qn);
            pack_keys(k + at, ld, head, T, D);
            pack_values(v + at, ld, head + kn, T, D);
            memset(head + kn + vn, 0, qn * 4);
            for (int t = 0; t < T; t++) row_pairs(q + at + (size_t)t * ld, head + kn + vn + (size_t)t * half, D);
        }
        uint8_t* mine = base + packed_bytes + (size_t)omp_get_thread_num() * per_thread;
        float* s = (float*)mine;
        uint32_t* w = (uint32_t*)(mine + up64((size_t)ROWS * S * 4));
        float inv[ROWS];
#pragma omp for schedule(dynamic, 4)
        for (int job = 0; job < B * H * Q; job++) {
            int bh = job / Q, t0 = job % Q * ROWS, rows = T - t0 < ROWS ? T - t0 : ROWS;
            const uint32_t* head = packed + (size_t)bh * (kn + vn + qn);
            block_scores(head + kn + vn + (size_t)t0 * half, head, s, P, D, S);
            for (int r = 0; r < ROWS; r++) inv[r] = row_weights(s + (size_t)r * S, w + (size_t)r * S / 2, T, J);
            size_t at = (size_t)(bh / H) * T * ld + (size_t)t0 * ld + (size_t)(bh % H) * D;
            block_context(w, S / 2, head + kn, inv, out + at, ld, rows, J, D);
        }
    }
}

#else
int sattn_supported(void) { return 0; }
size_t sattn_scratch(int B, int T, int H, int D, int threads) { return 0; }
void sattn(const float* q, const float* k, const float* v, float* out, int B, int T, int H, int D, int threads,
           void* scratch) {}
#endif
