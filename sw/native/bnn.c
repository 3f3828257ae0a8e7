/* xnorflow native kernels: bit-packed inference of a dense BNN (docs/semantics.md).
 *
 * One shared library serves every CPU of its architecture: each kernel is compiled for its
 * instruction set with __attribute__((target)) and chosen at run time (xf_isa_supported).
 * The Python side (xnorflow.native) packs the model into the layouts below and calls xf_run.
 *
 * Weight layouts (rows padded to whole groups of GROUP blocks, padding rows never fire):
 *   XF_DENSE_U8   (8-bit input): blocks of 16 rows; per block and 4-input step one uint64, bit
 *                 4r+j = weight of row r, input 4k+j (1 = +1). The ±1 dot product is
 *                 acc = 2P - S, P = sum of the pixels under 1-bits, S = sum of all pixels.
 *                 The AVX-512 path stores each word 8x8-transposed (bit 8j+q holds bit 8q+j), so
 *                 one GF(2) affine instruction turns it into the 64 bytes of the 16 rows.
 *                 The Python side negates the rows of direction -1 channels, so every threshold
 *                 test reads "acc >= bound".
 *   XF_DENSE_BITS (binary input): blocks of 8 rows; per block and input word k, 8 uint64 (one per
 *                 row). c = popcount(w XOR a); the Python side complements the rows of
 *                 direction -1 channels, so every threshold test reads "c <= bound".
 * Outputs: bits LSB-first into the next layer's words, or int32 scores (acc, or p = n - c).
 * A new layer kind (conv, pool) is a new kind value, its layout and one kernel per isa.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define XF_X86 1
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#define XF_ARM 1
#endif

enum { XF_DENSE_U8 = 0, XF_DENSE_BITS = 1 };
enum { XF_PORTABLE = 0, XF_AVX2 = 1, XF_AVX512 = 2, XF_NEON = 3 };

#define GROUP 4   /* row blocks per weight group: 64 rows (u8), 32 rows (bits) */
#define FBLOCK 32 /* frames a thread carries through all layers at once */

typedef struct {
    int32_t kind, n, m, mp; /* inputs, outputs, outputs padded to a whole group */
    int32_t k;              /* u8: 4-input steps ceil(n/4); bits: words ceil(n/64) */
    int32_t unused;
    const uint64_t *w;      /* packed weights, layout above */
    const int32_t *bound;   /* mp thresholds, folded; NULL for the score layer */
} xf_layer;

/* One layer on nf frames. x: u8 pixels (stride xs bytes) with their sums sx, or bit words
 * (stride xs words). Writes bits (y, stride ys bytes) or int32 scores (s, stride ss). */
typedef void (*layer_fn)(const xf_layer *L, const void *x, int xs, const int32_t *sx, int nf,
                         uint8_t *y, int ys, int32_t *s, int ss);

static inline uint32_t load32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* ---- portable C (any CPU) -------------------------------------------------------------- */

static void u8_portable(const xf_layer *L, const void *xv, int xs, const int32_t *sx, int nf,
                        uint8_t *y, int ys, int32_t *s, int ss)
{
    const uint8_t *x = xv;
    for (int f = 0; f < nf; f++)
        for (int b = 0; b < L->mp / 16; b++) {
            int32_t p[16] = {0};
            for (int k = 0; k < L->k; k++) {
                uint64_t w = L->w[(size_t)b * L->k + k];
                const uint8_t *xk = x + (size_t)f * xs + 4 * k;
                for (int r = 0; r < 16; r++)
                    for (int j = 0; j < 4; j++)
                        p[r] += xk[j] & -(int32_t)((w >> (4 * r + j)) & 1);
            }
            for (int r = 0; r < 16; r++) {
                int32_t acc = 2 * p[r] - sx[f], row = 16 * b + r;
                if (L->bound) y[(size_t)f * ys + row / 8] |= (uint8_t)((acc >= L->bound[row]) << (row % 8));
                else s[(size_t)f * ss + row] = acc;
            }
        }
}

static void bits_portable(const xf_layer *L, const void *xv, int xs, const int32_t *sx, int nf,
                          uint8_t *y, int ys, int32_t *s, int ss)
{
    const uint64_t *a = xv;
    (void)sx;
    for (int f = 0; f < nf; f++)
        for (int row = 0; row < L->mp; row++) {
            const uint64_t *w = L->w + (size_t)(row / 8) * L->k * 8 + row % 8;
            int32_t c = 0;
            for (int k = 0; k < L->k; k++) c += __builtin_popcountll(w[8 * k] ^ a[(size_t)f * xs + k]);
            if (L->bound) y[(size_t)f * ys + row / 8] |= (uint8_t)((c <= L->bound[row]) << (row % 8));
            else s[(size_t)f * ss + row] = L->n - c;
        }
}

/* ---- AVX-512 (F, BW, VNNI, VPOPCNTDQ) and GFNI ----------------------------------------------------- */
#ifdef XF_X86
#define T512 __attribute__((target("avx512f,avx512bw,avx512vnni,avx512vpopcntdq,gfni")))
#define F512 4 /* frames per register tile: GROUP x F512 = 16 accumulators (more spill) */
#define INL static inline __attribute__((always_inline))

/* nr blocks of 16 rows from block b0 on nf frames: nr x nf <= 16 accumulators in registers */
T512 INL void u8_tile512(const xf_layer *L, int b0, const int nr, const uint8_t *x, int xs,
                         const int32_t *sx, const int nf, uint8_t *y, int ys, int32_t *s, int ss)
{
    __m512i acc[2 * GROUP * F512]; /* [r * nf + f]; nr * nf <= 16 */
    const uint64_t *w = L->w + (size_t)b0 * L->k;
    /* byte j of qword q <- 0xFF if bit q of byte j of the word is set (GF(2) affine, row = bit q) */
    const __m512i sel = _mm512_set_epi64(0x8080808080808080LL, 0x4040404040404040LL,
                                         0x2020202020202020LL, 0x1010101010101010LL,
                                         0x0808080808080808LL, 0x0404040404040404LL,
                                         0x0202020202020202LL, 0x0101010101010101LL);
#pragma GCC unroll 8
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 8
        for (int f = 0; f < nf; f++) acc[r * nf + f] = _mm512_setzero_si512();
    for (int k = 0; k < L->k; k++) {
        __m512i wv[2 * GROUP]; /* bytes -1 where the weight bit is 1: dpbusd sums -P */
#pragma GCC unroll 8
        for (int r = 0; r < nr; r++) /* the word is stored 8x8-transposed, see the top */
            wv[r] = _mm512_gf2p8affine_epi64_epi8(_mm512_set1_epi64((long long)w[(size_t)r * L->k + k]),
                                                  sel, 0);
#pragma GCC unroll 8
        for (int f = 0; f < nf; f++) {
            __m512i xb = _mm512_set1_epi32((int32_t)load32(x + (size_t)f * xs + 4 * k));
#pragma GCC unroll 8
            for (int r = 0; r < nr; r++) acc[r * nf + f] = _mm512_dpbusd_epi32(acc[r * nf + f], xb, wv[r]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < nr; r++) {
        int row = (b0 + r) * 16;
#pragma GCC unroll 8
        for (int f = 0; f < nf; f++) {
            __m512i a = _mm512_sub_epi32(_mm512_set1_epi32(-sx[f]), _mm512_add_epi32(acc[r * nf + f], acc[r * nf + f]));
            if (L->bound) {
                __mmask16 m = _mm512_cmpge_epi32_mask(a, _mm512_loadu_si512(L->bound + row));
                memcpy(y + (size_t)f * ys + row / 8, &m, 2);
            } else {
                _mm512_storeu_si512(s + (size_t)f * ss + row, a);
            }
        }
    }
}

/* nr blocks of 8 rows from block b0 on nf frames */
T512 INL void bits_tile512(const xf_layer *L, int b0, const int nr, const uint64_t *a, int xs,
                           const int nf, uint8_t *y, int ys, int32_t *s, int ss)
{
    __m512i acc[GROUP * F512]; /* [r * nf + f] */
    const uint64_t *w = L->w + (size_t)b0 * L->k * 8;
#pragma GCC unroll 8
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 8
        for (int f = 0; f < nf; f++) acc[r * nf + f] = _mm512_setzero_si512();
    for (int k = 0; k < L->k; k++) {
        __m512i wv[2 * GROUP];
#pragma GCC unroll 8
        for (int r = 0; r < nr; r++) wv[r] = _mm512_loadu_si512(w + ((size_t)r * L->k + k) * 8);
#pragma GCC unroll 8
        for (int f = 0; f < nf; f++) {
            __m512i av = _mm512_set1_epi64((long long)a[(size_t)f * xs + k]);
#pragma GCC unroll 8
            for (int r = 0; r < nr; r++)
                acc[r * nf + f] = _mm512_add_epi64(acc[r * nf + f], _mm512_popcnt_epi64(_mm512_xor_si512(wv[r], av)));
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < nr; r++) {
        int row = (b0 + r) * 8;
#pragma GCC unroll 8
        for (int f = 0; f < nf; f++) {
            if (L->bound) {
                __m512i b = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(L->bound + row)));
                y[(size_t)f * ys + row / 8] = (uint8_t)_mm512_cmple_epi64_mask(acc[r * nf + f], b);
            } else {
                __m512i p = _mm512_sub_epi64(_mm512_set1_epi64(L->n), acc[r * nf + f]);
                _mm256_storeu_si256((__m256i *)(s + (size_t)f * ss + row), _mm512_cvtepi64_epi32(p));
            }
        }
    }
}

#define FRAME_SWITCH(F, CALL)                                                         \
    for (int f0 = 0; f0 < nf; f0 += F) {                                              \
        int n_ = nf - f0 < F ? nf - f0 : F;                                           \
        switch (n_) { case 1: CALL(1); break; case 2: CALL(2); break;                 \
                      case 3: CALL(3); break; default: CALL(4); break; }              \
    }

/* Few frames (batch 1): 8 blocks at once, so 8 independent accumulator chains */
#define BLOCK_LOOP(TILE)                                                              \
    for (int b0 = 0, nr; b0 < nb; b0 += nr) {                                         \
        nr = nf <= 2 && nb - b0 >= 2 * GROUP ? 2 * GROUP : GROUP;                     \
        if (nr > GROUP) { int f0 = 0;                                                 \
            if (nf == 1) TILE(2 * GROUP, 1); else TILE(2 * GROUP, 2); }               \
        else { FRAME_SWITCH(F512, TILE_G) }                                           \
    }

T512 static void u8_avx512(const xf_layer *L, const void *xv, int xs, const int32_t *sx, int nf,
                           uint8_t *y, int ys, int32_t *s, int ss)
{
    const uint8_t *x = xv;
    int nb = L->mp / 16;
#define TILE(R, N) u8_tile512(L, b0, R, x + (size_t)f0 * xs, xs, sx + f0, N, \
                              y + (size_t)f0 * ys, ys, s + (size_t)f0 * ss, ss)
#define TILE_G(N) TILE(GROUP, N)
    if (nf >= 8) { /* many frames: 2 blocks x 8 frames, half the weight expansions per dpbusd */
        int full = nf & ~7;
        for (int b0 = 0; b0 < nb; b0 += 2)
            for (int f0 = 0; f0 < full; f0 += 8) TILE(2, 8);
        x += (size_t)full * xs, sx += full, y += (size_t)full * ys, s += (size_t)full * ss;
        if ((nf -= full) == 0) return;
    }
    BLOCK_LOOP(TILE)
#undef TILE
}

T512 static void bits_avx512(const xf_layer *L, const void *xv, int xs, const int32_t *sx, int nf,
                             uint8_t *y, int ys, int32_t *s, int ss)
{
    const uint64_t *a = xv;
    int nb = L->mp / 8;
    (void)sx;
#define TILE(R, N) bits_tile512(L, b0, R, a + (size_t)f0 * xs, xs, N, y + (size_t)f0 * ys, ys, \
                                s + (size_t)f0 * ss, ss)
    BLOCK_LOOP(TILE)
#undef TILE
#undef TILE_G
}

/* ---- AVX2 ------------------------------------------------------------------------------ */
#define T256 __attribute__((target("avx2")))
#define F256 4 /* frames per tile: one block (2 halves) x 4 frames = 8 accumulators */

/* 32 weight bits -> 32 bytes, -1 where the bit is 1 (byte i <- bit i) */
T256 INL __m256i expand32(uint32_t bits)
{
    const __m256i sel = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                         2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int32_t)bits), sel);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

T256 INL void u8_tile256(const xf_layer *L, int b, const uint8_t *x, int xs, const int32_t *sx,
                         const int nf, uint8_t *y, int ys, int32_t *s, int ss)
{
    __m256i acc[2][F256];
    const __m256i ones = _mm256_set1_epi16(1);
    const uint64_t *w = L->w + (size_t)b * L->k;
#pragma GCC unroll 8
    for (int h = 0; h < 2; h++)
#pragma GCC unroll 8
        for (int f = 0; f < nf; f++) acc[h][f] = _mm256_setzero_si256();
    for (int k = 0; k < L->k; k++) {
        __m256i wv[2] = {expand32((uint32_t)w[k]), expand32((uint32_t)(w[k] >> 32))};
#pragma GCC unroll 8
        for (int f = 0; f < nf; f++) {
            __m256i xb = _mm256_set1_epi32((int32_t)load32(x + (size_t)f * xs + 4 * k));
#pragma GCC unroll 8
            for (int h = 0; h < 2; h++) /* u8 x s8 pairs: |2 * 255| fits int16 */
                acc[h][f] = _mm256_add_epi32(acc[h][f],
                                             _mm256_madd_epi16(_mm256_maddubs_epi16(xb, wv[h]), ones));
        }
    }
#pragma GCC unroll 8
    for (int f = 0; f < nf; f++)
#pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            int row = b * 16 + h * 8;
            __m256i a = _mm256_sub_epi32(_mm256_set1_epi32(-sx[f]), _mm256_add_epi32(acc[h][f], acc[h][f]));
            if (L->bound) { /* acc >= T  <=>  acc > T - 1 (T is far from INT32_MIN) */
                __m256i t = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(L->bound + row)),
                                             _mm256_set1_epi32(1));
                y[(size_t)f * ys + row / 8] = (uint8_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(a, t)));
            } else {
                _mm256_storeu_si256((__m256i *)(s + (size_t)f * ss + row), a);
            }
        }
}

T256 INL void bits_tile256(const xf_layer *L, int b, const uint64_t *a, int xs, const int nf,
                           uint8_t *y, int ys, int32_t *s, int ss)
{
    __m256i acc[2][F256];
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i lo = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    const uint64_t *w = L->w + (size_t)b * L->k * 8;
#pragma GCC unroll 8
    for (int h = 0; h < 2; h++)
#pragma GCC unroll 8
        for (int f = 0; f < nf; f++) acc[h][f] = zero;
    for (int k = 0; k < L->k; k++) {
        __m256i wv[2] = {_mm256_loadu_si256((const __m256i *)(w + 8 * k)),
                         _mm256_loadu_si256((const __m256i *)(w + 8 * k + 4))};
#pragma GCC unroll 8
        for (int f = 0; f < nf; f++) {
            __m256i av = _mm256_set1_epi64x((long long)a[(size_t)f * xs + k]);
#pragma GCC unroll 8
            for (int h = 0; h < 2; h++) { /* nibble-table popcount, bytes summed by vpsadbw */
                __m256i v = _mm256_xor_si256(wv[h], av);
                __m256i c = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(v, lo)),
                                            _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), lo)));
                acc[h][f] = _mm256_add_epi64(acc[h][f], _mm256_sad_epu8(c, zero));
            }
        }
    }
#pragma GCC unroll 8
    for (int f = 0; f < nf; f++) {
        int row = b * 8;
        if (L->bound) {
            int bits = 0;
            for (int h = 0; h < 2; h++) {
                __m256i t = _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(L->bound + row + 4 * h)));
                bits |= (~_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(acc[h][f], t))) & 15) << (4 * h);
            }
            y[(size_t)f * ys + row / 8] = (uint8_t)bits;
        } else {
            int64_t c[8];
            _mm256_storeu_si256((__m256i *)c, acc[0][f]);
            _mm256_storeu_si256((__m256i *)(c + 4), acc[1][f]);
            for (int r = 0; r < 8; r++) s[(size_t)f * ss + row + r] = L->n - (int32_t)c[r];
        }
    }
}

T256 static void u8_avx2(const xf_layer *L, const void *xv, int xs, const int32_t *sx, int nf,
                         uint8_t *y, int ys, int32_t *s, int ss)
{
    const uint8_t *x = xv;
    for (int b = 0; b < L->mp / 16; b++) {
#define CALL(N) u8_tile256(L, b, x + (size_t)f0 * xs, xs, sx + f0, N, y + (size_t)f0 * ys, ys, \
                           s + (size_t)f0 * ss, ss)
        FRAME_SWITCH(F256, CALL)
#undef CALL
    }
}

T256 static void bits_avx2(const xf_layer *L, const void *xv, int xs, const int32_t *sx, int nf,
                           uint8_t *y, int ys, int32_t *s, int ss)
{
    const uint64_t *a = xv;
    (void)sx;
    for (int b = 0; b < L->mp / 8; b++) {
#define CALL(N) bits_tile256(L, b, a + (size_t)f0 * xs, xs, N, y + (size_t)f0 * ys, ys, \
                             s + (size_t)f0 * ss, ss)
        FRAME_SWITCH(F256, CALL)
#undef CALL
    }
}
#endif /* XF_X86 */

/* ---- NEON (AArch64): binary layers; the 8-bit layer uses the portable C ----------------- */
#ifdef XF_ARM
static void bits_neon(const xf_layer *L, const void *xv, int xs, const int32_t *sx, int nf,
                      uint8_t *y, int ys, int32_t *s, int ss)
{
    const uint64_t *a = xv;
    (void)sx;
    for (int f = 0; f < nf; f++)
        for (int b = 0; b < L->mp / 8; b++) {
            const uint64_t *w = L->w + (size_t)b * L->k * 8;
            uint64x2_t acc[4] = {vdupq_n_u64(0), vdupq_n_u64(0), vdupq_n_u64(0), vdupq_n_u64(0)};
            for (int k = 0; k < L->k; k++) {
                uint64x2_t av = vdupq_n_u64(a[(size_t)f * xs + k]);
                for (int q = 0; q < 4; q++) {
                    uint8x16_t c = vcntq_u8(vreinterpretq_u8_u64(veorq_u64(vld1q_u64(w + 8 * k + 2 * q), av)));
                    acc[q] = vaddq_u64(acc[q], vpaddlq_u32(vpaddlq_u16(vpaddlq_u8(c))));
                }
            }
            for (int r = 0; r < 8; r++) {
                int32_t c = (int32_t)(r & 1 ? vgetq_lane_u64(acc[r / 2], 1) : vgetq_lane_u64(acc[r / 2], 0));
                int row = 8 * b + r;
                if (L->bound) y[(size_t)f * ys + b] |= (uint8_t)((c <= L->bound[row]) << r);
                else s[(size_t)f * ss + row] = L->n - c;
            }
        }
}
#endif

/* ---- dispatch and the network ---------------------------------------------------------- */

int xf_isa_supported(int isa)
{
    switch (isa) {
    case XF_PORTABLE: return 1;
#ifdef XF_X86
    case XF_AVX2: __builtin_cpu_init(); return __builtin_cpu_supports("avx2");
    case XF_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vpopcntdq") &&
               __builtin_cpu_supports("gfni");
#endif
#ifdef XF_ARM
    case XF_NEON: return 1; /* Advanced SIMD is part of every AArch64 CPU */
#endif
    default: return 0;
    }
}

static int kernels(int isa, layer_fn fn[2])
{
    if (!xf_isa_supported(isa)) return 0;
    fn[XF_DENSE_U8] = u8_portable;
    fn[XF_DENSE_BITS] = bits_portable;
#ifdef XF_X86
    if (isa == XF_AVX2) { fn[XF_DENSE_U8] = u8_avx2; fn[XF_DENSE_BITS] = bits_avx2; }
    if (isa == XF_AVX512) { fn[XF_DENSE_U8] = u8_avx512; fn[XF_DENSE_BITS] = bits_avx512; }
#endif
#ifdef XF_ARM
    if (isa == XF_NEON) fn[XF_DENSE_BITS] = bits_neon;
#endif
    return 1;
}

typedef struct {
    const xf_layer *layers;
    int nl;
    const uint8_t *frames;
    int64_t batch, *next; /* frames are taken FBLOCK at a time from the shared *next */
    int64_t *scores, *classes;
    layer_fn fn[2];
    int status;
} job;

static void *run_job(void *arg)
{
    job *J = arg;
    const xf_layer *L = J->layers;
    int n0 = L[0].n, xs = 4 * L[0].k, aw = 1, sw = L[J->nl - 1].mp, classes = L[J->nl - 1].m;
    for (int l = 0; l < J->nl; l++) if (L[l].mp / 64 + 1 > aw) aw = L[l].mp / 64 + 1;
    size_t fb = J->batch < FBLOCK ? (size_t)J->batch : FBLOCK;
    uint8_t *xbuf = xs != n0 ? calloc(fb * xs, 1) : NULL;
    uint64_t *act[2] = {malloc(fb * aw * 8), malloc(fb * aw * 8)};
    int32_t *sbuf = malloc(fb * sw * 4), sx[FBLOCK];
    if ((xs != n0 && !xbuf) || !act[0] || !act[1] || !sbuf) { J->status = -1; goto done; }
    for (int64_t f0; (f0 = __atomic_fetch_add(J->next, FBLOCK, __ATOMIC_RELAXED)) < J->batch;) {
        int nf = J->batch - f0 < FBLOCK ? (int)(J->batch - f0) : FBLOCK;
        const uint8_t *fr = J->frames + (size_t)f0 * n0;
        const void *x = fr;
        int stride = n0;
        if (xs != n0) { /* pad each frame to whole 4-pixel steps */
            for (int f = 0; f < nf; f++) memcpy(xbuf + (size_t)f * xs, fr + (size_t)f * n0, n0);
            x = xbuf;
            stride = xs;
        }
        for (int f = 0; f < nf; f++) {
            int32_t t = 0;
            for (int j = 0; j < n0; j++) t += fr[(size_t)f * n0 + j];
            sx[f] = t;
        }
        for (int l = 0; l < J->nl; l++) {
            uint64_t *y = act[l & 1];
            if (L[l].bound) memset(y, 0, (size_t)nf * aw * 8);
            J->fn[L[l].kind](&L[l], x, stride, sx, nf, (uint8_t *)y, aw * 8, sbuf, sw);
            x = y;
            stride = aw;
        }
        for (int f = 0; f < nf; f++) {
            const int32_t *sc = sbuf + (size_t)f * sw;
            int best = 0;
            for (int i = 0; i < classes; i++) {
                J->scores[(f0 + f) * classes + i] = sc[i];
                if (sc[i] > sc[best]) best = i; /* ties: the lowest index */
            }
            J->classes[f0 + f] = best;
        }
    }
done:
    free(xbuf); free(act[0]); free(act[1]); free(sbuf);
    return NULL;
}

/* Run nl layers on batch frames (uint8, batch x layers[0].n, contiguous). Writes into out the
 * int64 scores (batch x classes), then the classes (batch). threads: how many threads share the
 * batch (at most one per 16 frames), each taking the next FBLOCK frames when it is free. Returns 0, -1 (out of memory) or -2 (isa not supported). */
int xf_run(const xf_layer *layers, int nl, const uint8_t *frames, int64_t batch, int64_t *out,
           int isa, int threads)
{
    enum { MAXT = 256 };
    job jobs[MAXT];
    pthread_t tid[MAXT];
    int started[MAXT] = {0}, status = 0;
    int64_t next = 0; /* the first frame no thread has taken yet */
    layer_fn fn[2];
    if (!kernels(isa, fn)) return -2;
    if (threads > (batch + 15) / 16) threads = (int)((batch + 15) / 16);
    if (threads > MAXT) threads = MAXT;
    if (threads < 1) threads = 1;
    for (int t = 0; t < threads; t++)
        jobs[t] = (job){layers, nl, frames, batch, &next, out, out + batch * layers[nl - 1].m,
                        {fn[0], fn[1]}, 0};
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&tid[t], NULL, run_job, &jobs[t]) == 0;
    run_job(&jobs[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else run_job(&jobs[t]); /* no thread to be had: this one does the share */
    }
    for (int t = 0; t < threads; t++)
        if (jobs[t].status) status = jobs[t].status;
    return status;
}
