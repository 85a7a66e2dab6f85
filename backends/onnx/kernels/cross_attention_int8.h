/* The int8 half of cross_attention.c (included there, inside its x86-64 AVX-512 section):
   attention over int8 keys and values with a float32 scale each, a prompt's rows in bfloat16,
   and the quantizers that pack the cross_kv graph's float32 into that layout. */
#pragma once

/* ---- int8 keys and values, a float32 scale each (cross_attention.c's SCORES and CONTEXT) - */
SCORES(scores8_i8, 8, int8_t, WIDEN8, 1)
SCORES(scores1_i8, 1, int8_t, WIDEN8, 1)
SCORE_ROWS(scores_i8, int8_t, (size_t)(D + 4) * 16, scores1_i8, scores8_i8)
CONTEXT(context_i8, int8_t, (size_t)D + 4, WIDEN8, 1)

/* ---- a prompt's rows over int8 keys and values, in bfloat16 (AVX512_BF16) --------------------
   With 8 or more query rows the attention is bound by arithmetic, not by reading the keys: each
   (row, head)'s keys and values are widened once into bfloat16 pairs (exact: they are integers
   of at most 127), and VDPBF16PS does two products per float32 lane, as the encoder's kernel
   does (self_attention_bf16.c). The queries go in as sums of two bfloat16, so the scores (whose
   errors the softmax exponentiates) are float32's; the softmax weights (times each value row's
   scale) are rounded to bfloat16. Scores and contexts accumulate in float32. A 224-token
   prompt's kernel time: 14.8 ms widening int8 at every product, 9.7 ms here (8.4 with the
   queries rounded too; the texts moved as much either way, by greedy decoding's flips). */
#define BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define QROWS 8

static int has_bf16(void) { return __builtin_cpu_supports("avx512bf16"); }

/* bytes of scratch one thread needs for a (row, head): key pairs, value pairs, value scales,
   a block of queries and its weights as pairs */
static size_t bf16_scratch(int D, int S) {
    size_t P = (size_t)(S + 15) / 16, J = (size_t)(S + 1) / 2, W = (J + 15) & ~(size_t)15;
    return (P * 16 * (D / 2) + J * D + (size_t)S + 2 * QROWS * (D / 2) + QROWS * W) * 4 + 64;
}

size_t xattn_scratch(int D, int S, int threads) { return (size_t)threads * bf16_scratch(D, S); }

/* 16 int8 -> the bits of 16 float32, whose upper halves are their exact bfloat16 */
BF16 static inline __m512i int8_bits(const int8_t* x) {
    return _mm512_castps_si512(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)x))));
}

/* (low, high) bfloat16 pairs of two rows of 16 integers (high may be NULL: zeros) */
BF16 static inline __m512i int8_pairs(const int8_t* low, const int8_t* high) {
    __m512i lo = _mm512_srli_epi32(int8_bits(low), 16);
    if (!high) return lo;
    return _mm512_or_si512(lo, _mm512_and_si512(int8_bits(high), _mm512_set1_epi32((int)0xFFFF0000)));
}

/* int8 key panels (P, D + 4, 16) -> pairs kp[p][i][lane] = (k[2i], k[2i+1]) of key 16p + lane */
BF16 static void key_pairs(const int8_t* k, uint32_t* kp, int P, int D) {
    for (int p = 0; p < P; p++) {
        const int8_t* panel = k + (size_t)p * (D + 4) * 16;
        for (int i = 0; i < D / 2; i++)
            _mm512_storeu_si512(kp + ((size_t)p * (D / 2) + i) * 16,
                                int8_pairs(panel + 2 * i * 16, panel + (2 * i + 1) * 16));
    }
}

/* int8 value rows (S, D + 4) -> pairs vp[j][c][lane] = (v[2j][16c + lane], v[2j+1][16c + lane])
   and each row's scale in vs */
BF16 static void value_pairs(const int8_t* v, uint32_t* vp, float* vs, int S, int D) {
    for (int j = 0; j < S; j++) memcpy(vs + j, v + (size_t)j * (D + 4) + D, sizeof(float));
    for (int j = 0; j < (S + 1) / 2; j++) {
        const int8_t* a = v + (size_t)(2 * j) * (D + 4);
        const int8_t* b = 2 * j + 1 < S ? a + D + 4 : NULL;
        for (int c = 0; c < D / 16; c++)
            _mm512_storeu_si512(vp + ((size_t)j * (D / 16) + c) * 16,
                                int8_pairs(a + 16 * c, b ? b + 16 * c : NULL));
    }
}

/* the bfloat16 of 16 float32 (the low or high half of 32 packed), as float32 */
BF16 static inline __m512 widen_bf16(__m256i half) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
}

/* rows (nr <= QROWS, zeros after) of float32 -> bfloat16 pairs of consecutive numbers, each
   number as a sum of two: pairs (the nearest bfloat16) and rest (what is left, rounded), so
   the scores are the float32 queries' to about 2^-16 */
BF16 static void float_pairs(const float* x, int nr, int ld, uint32_t* pairs, uint32_t* rest, int n) {
    for (int r = 0; r < QROWS; r++)
        for (int d = 0; d < n; d += 32) {
            __m512 lo = r < nr ? _mm512_loadu_ps(x + (size_t)r * ld + d) : _mm512_setzero_ps();
            __m512 hi = r < nr ? _mm512_loadu_ps(x + (size_t)r * ld + d + 16) : _mm512_setzero_ps();
            __m512i b = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
            __m512 lo_left = _mm512_sub_ps(lo, widen_bf16(_mm512_castsi512_si256(b)));
            __m512 hi_left = _mm512_sub_ps(hi, widen_bf16(_mm512_extracti64x4_epi64(b, 1)));
            _mm512_storeu_si512(pairs + (size_t)r * (n / 2) + d / 2, b);
            _mm512_storeu_si512(rest + (size_t)r * (n / 2) + d / 2, (__m512i)_mm512_cvtne2ps_pbh(hi_left, lo_left));
        }
}

/* scores of QROWS query rows (as pairs and their rests) against every panel, times each key's
   scale */
BF16 static void block_scores_bf16(const uint32_t* q, const uint32_t* kp, const int8_t* k, float* s,
                                   int nr, int D, int S) {
    int H = D / 2, P = (S + 15) / 16;
    const uint32_t* q_rest = q + QROWS * H;
    for (int p = 0; p < P; p++) {
        __m512 acc[QROWS];
        for (int r = 0; r < QROWS; r++) acc[r] = _mm512_setzero_ps();
        const uint32_t* panel = kp + (size_t)p * H * 16;
        for (int i = 0; i < H; i++) {
            __m512bh x = (__m512bh)_mm512_loadu_si512(panel + i * 16);
            for (int r = 0; r < QROWS; r++) {
                acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_set1_epi32((int)q[r * H + i]), x);
                acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_set1_epi32((int)q_rest[r * H + i]), x);
            }
        }
        __m512 scale = _mm512_loadu_ps((const float*)(k + (size_t)p * (D + 4) * 16 + D * 16));
        int left = S - p * 16;
        __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        for (int r = 0; r < nr; r++) _mm512_mask_storeu_ps(s + (size_t)r * S + p * 16, m, _mm512_mul_ps(acc[r], scale));
    }
}

/* a row of S float32 weights -> bfloat16 pairs of consecutive ones, W pairs, zero past S */
BF16 static void weight_pairs(const float* w, int S, uint32_t* pairs, int W) {
    for (int j = 0; j < 2 * W; j += 32) {
        __mmask16 m0 = S - j >= 16 ? (__mmask16)0xFFFF : S > j ? (__mmask16)((1u << (S - j)) - 1) : 0;
        __mmask16 m1 = S - j >= 32 ? (__mmask16)0xFFFF : S > j + 16 ? (__mmask16)((1u << (S - j - 16)) - 1) : 0;
        __m512 lo = _mm512_maskz_loadu_ps(m0, w + j), hi = _mm512_maskz_loadu_ps(m1, w + j + 16);
        _mm512_storeu_si512(pairs + j / 2, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
}

/* out rows = weights (pairs, row stride W) . value pairs, 16 dims at a time for QROWS rows */
BF16 static void block_context_bf16(const uint32_t* w, int W, const uint32_t* vp, float* out, int nr,
                                    int D, int S) {
    int C = D / 16, J = (S + 1) / 2;
    for (int c = 0; c < C; c++) {
        __m512 acc[QROWS];
        for (int r = 0; r < QROWS; r++) acc[r] = _mm512_setzero_ps();
        for (int j = 0; j < J; j++) {
            __m512bh x = (__m512bh)_mm512_loadu_si512(vp + ((size_t)j * C + c) * 16);
            for (int r = 0; r < QROWS; r++)
                acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_set1_epi32((int)w[(size_t)r * W + j]), x);
        }
        for (int r = 0; r < nr; r++) _mm512_storeu_ps(out + (size_t)r * D + 16 * c, acc[r]);
    }
}

/* one (row, head) of a prompt: T query rows over S int8 keys and values */
BF16 static void prompt_head(const float* q, const int8_t* k, const int8_t* v, float* out, float* s,
                             float* work, int T, int D, int S, uint8_t* scratch) {
    int P = (S + 15) / 16, J = (S + 1) / 2, W = (J + 15) & ~15;
    uint32_t* kp = (uint32_t*)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    uint32_t* vp = kp + (size_t)P * 16 * (D / 2);
    float* vs = (float*)(vp + (size_t)J * D);
    uint32_t* qp = (uint32_t*)(vs + S);
    uint32_t* wp = qp + 2 * QROWS * (D / 2);
    key_pairs(k, kp, P, D);
    value_pairs(v, vp, vs, S, D);
    for (int t0 = 0; t0 < T; t0 += QROWS) {
        int nr = T - t0 < QROWS ? T - t0 : QROWS;
        float_pairs(q + (size_t)t0 * D, nr, D, qp, qp + QROWS * (D / 2), D);
        block_scores_bf16(qp, kp, k, s + (size_t)t0 * S, nr, D, S);
        for (int r = 0; r < QROWS; r++) {
            float* w = work + (size_t)(t0 + r) * S;
            if (r < nr) {
                softmax(s + (size_t)(t0 + r) * S, w, S);
                for (int j = 0; j < S; j += 16) { /* each value row's scale into its weight */
                    __mmask16 m = S - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (S - j)) - 1);
                    _mm512_mask_storeu_ps(w + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w + j), _mm512_maskz_loadu_ps(m, vs + j)));
                }
            }
            uint32_t* row = wp + (size_t)r * W;
            if (r < nr) weight_pairs(w, S, row, W);
            else memset(row, 0, (size_t)W * 4);
        }
        block_context_bf16(wp, W, vp, out + (size_t)t0 * D, nr, D, S);
    }
}

/* xattn with int8 keys (BH, ceil(S/16), D + 4, 16) and values (BH, S, D + 4) as packed by
   xquant_k and xquant_v; a prompt's rows (T >= 8) in bfloat16 where the CPU has it, with
   xattn_scratch(D, S, threads) bytes of scratch */
void xattn_i8(const float* q, const int8_t* k, const int8_t* v, float* out, float* s, float* work,
              int BH, int T, int D, int S, int threads, uint8_t* scratch) {
    size_t kstride = (size_t)((S + 15) / 16) * 16 * (D + 4), vstride = (size_t)S * (D + 4);
    int wide = T >= QROWS && D % 32 == 0 && scratch != NULL && has_bf16();
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int u = 0; u < BH; u++) {
        const float* qu = q + (size_t)u * T * D;
        float* su = s + (size_t)u * T * S;
        float* wu = work + (size_t)u * T * S;
        if (wide) {
            uint8_t* mine = scratch + (size_t)omp_get_thread_num() * bf16_scratch(D, S);
            prompt_head(qu, k + u * kstride, v + u * vstride, out + (size_t)u * T * D, su, wu, T, D, S, mine);
            continue;
        }
        scores_i8(qu, k + u * kstride, su, T, D, S);
        for (int t = 0; t < T; t++) softmax(su + (size_t)t * S, wu + (size_t)t * S, S);
        for (int t = 0; t < T; t += 4)
            context_i8(wu + (size_t)t * S, v + u * vstride, out + ((size_t)u * T + t) * D, D, S,
                       T - t < 4 ? T - t : 4);
    }
}

/* 16 numbers (masked) quantized by 127 / max|x| (0 where all are 0), saturated, as 16 bytes */
AVX512 static void quantize16(const float* x, __mmask16 m, int8_t* out, __m512 inverse) {
    __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x), inverse)); /* to even */
    _mm_storeu_si128((__m128i*)out, _mm512_cvtsepi32_epi8(q));
}

/* float32 keys (n, D, S) as the cross_kv graph writes them -> int8 panels (n, ceil(S/16), D + 4,
   16), each key's scale after its panel's numbers; keys past S are zeros with scale 0 */
AVX512 void xquant_k(const float* k, int8_t* out, size_t n, int D, int S) {
    int panels = (S + 15) / 16;
    for (size_t u = 0; u < n; u++) {
        const float* head = k + u * (size_t)D * S;
        for (int p = 0; p < panels; p++) {
            int left = S - p * 16;
            __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
            int8_t* packed = out + (u * panels + p) * (size_t)(D + 4) * 16;
            __m512 top = _mm512_setzero_ps();
            const float* column = head + p * 16; /* the panel's keys in each row d of the head */
            for (int d = 0; d < D; d++)
                top = _mm512_max_ps(top, _mm512_abs_ps(_mm512_maskz_loadu_ps(m, column + (size_t)d * S)));
            __mmask16 live = _mm512_cmp_ps_mask(top, _mm512_setzero_ps(), _CMP_GT_OQ);
            __m512 inverse = _mm512_maskz_div_ps(live, _mm512_set1_ps(127.f), top);
            for (int d = 0; d < D; d++) quantize16(column + (size_t)d * S, m, packed + d * 16, inverse);
            _mm512_storeu_ps((float*)(packed + D * 16), _mm512_mul_ps(top, _mm512_set1_ps(1.f / 127.f)));
        }
    }
}

/* float32 value rows (n, D), D a multiple of 16 -> int8 rows (n, D + 4), each row's scale after it */
AVX512 void xquant_v(const float* v, int8_t* out, size_t n, int D) {
    for (size_t j = 0; j < n; j++) {
        const float* row = v + j * D;
        int8_t* packed = out + j * (size_t)(D + 4);
        __m512 top = _mm512_setzero_ps();
        for (int d = 0; d < D; d += 16) top = _mm512_max_ps(top, _mm512_abs_ps(_mm512_loadu_ps(row + d)));
        float peak = _mm512_reduce_max_ps(top);
        __m512 inverse = _mm512_set1_ps(peak > 0.f ? 127.f / peak : 0.f);
        for (int d = 0; d < D; d += 16) quantize16(row + d, (__mmask16)0xFFFF, packed + d, inverse);
        float scale = peak / 127.f;
        memcpy(packed + D, &scale, sizeof scale);
    }
}
