/* xnorflow native kernels: bit-packed inference of a BNN (docs/semantics.md): dense layers,
 * convolutions and max-pooling.
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
 *
 * Feature maps (conv2d, maxpool2d) are stored channel-last as in docs/semantics.md §5.1, each
 * pixel in whole bytes: ib = ceil(C/8) bytes of bits (channel ch at bit ch%8 of byte ch/8, the
 * bits above C zero) or C bytes of pixels; a pixel's bytes follow the previous pixel's, rows
 * follow rows. A map that a convolution with padding P reads is stored with a margin of P
 * pixels on every side holding that convolution's pad value, written by the layer before (its
 * `q` and `fill`), so the convolution reads every window without a bounds test. A dense layer
 * after a map reads the map's bytes as its input vector (the Python side lays its weight rows
 * out in the same bytes, zero bits where a pixel has unused bits).
 *   XF_CONV_U8   (8-bit input): window row ky of output (y, x) is the K*C bytes at pixel
 *                (y*S + ky, x*S) of the padded map, read as nw = ceil(K*C/4) 4-byte steps.
 *                Blocks of 16 output channels; per block, ky and step one 64-byte record,
 *                channel r's ±1 weights at bytes 4r..4r+3 (0 for the bytes past the row, so
 *                whatever they hold adds nothing). acc = sum of weight x pixel (vpdpbusd on
 *                AVX-512, vpmaddubsw + vpmaddwd on AVX2), rows of direction -1 negated,
 *                "acc >= bound".
 *   XF_CONV_BITS (binary input): window row ky is the K*ib bytes at pixel (y*S + ky, x*S), read
 *                as nw = ceil(K*ib/8) unaligned 64-bit words: a direct convolution over the
 *                packed channel words, no window copied. Blocks of 8 output channels; per
 *                block and window word t = ky*nw + i, 8 uint64 (one per channel), zero past the
 *                row. The bits past the row in a row's last word belong to the next pixels:
 *                each XORs with a 0 weight bit, so their popcount (the same for every channel)
 *                is subtracted: c = popcount(w XOR a) - junk, "c <= bound" as for dense.
 *   XF_POOL      per output pixel and byte, the OR of the window's bytes where the channel of
 *                the convolution before rises (`rise`), the AND elsewhere (§5.3).
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

enum { XF_DENSE_U8 = 0, XF_DENSE_BITS = 1, XF_CONV_U8 = 2, XF_CONV_BITS = 3, XF_POOL = 4,
       XF_KINDS = 5 };
enum { XF_PORTABLE = 0, XF_AVX2 = 1, XF_AVX512 = 2, XF_NEON = 3 };

#define GROUP 4   /* row blocks per weight group: 64 rows (u8), 32 rows (bits) */
#define FBLOCK 32    /* frames a thread carries through all layers at once (dense networks) */
#define FBLOCK_MAP 4 /* the same for networks with feature maps: a frame's maps stay in L1 */

typedef struct {
    int32_t kind, n, m, mp; /* inputs, outputs, outputs padded to a whole group */
    int32_t k;              /* dense u8: 4-input steps ceil(n/4); dense bits: words of the input
                               (ceil(map bytes/8) after a map); conv: steps or words per window */
    int32_t nw;             /* conv: 4-byte steps (u8) or words (bits) of one window row */
    const uint64_t *w;      /* packed weights, layout above */
    const int32_t *bound;   /* mp thresholds, folded; NULL for the score layer */
    /* feature-map layers (conv, pool) */
    int32_t ih, iw, ib;     /* input map as stored (margin included): rows, columns, bytes/pixel */
    int32_t kern, stride;   /* window K (pool: k) and stride S (pool: k) */
    int32_t pad, pad_value; /* conv on the frame: its padding P and pad pixel value V */
    int32_t oh, ow, ob;     /* output map without margin: rows, columns, bytes per pixel */
    int32_t q;              /* margin written around the output map (the next conv's padding) */
    int32_t unused;
    const uint8_t *fill;    /* ob bytes: the margin's pixel (the next conv's pad bit, all ch.) */
    const uint8_t *rise;    /* pool: bit set where the conv before has direction +1 (ib bytes,
                               then zeros to a whole 8) */
} xf_layer;

/* One layer on nf frames. x: u8 pixels (stride xs bytes) with their sums sx, or bit words
 * (stride xs words). Writes bits (y, stride ys bytes) or int32 scores (s, stride ss). */
typedef void (*layer_fn)(const xf_layer *L, const void *x, int xs, const int32_t *sx, int nf,
                         uint8_t *y, int ys, int32_t *s, int ss);

static inline uint32_t load32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t load64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* Geometry of a convolution's output pixel: its window's first byte in the input map x, where
 * its output bytes go in y (after the margin q). */
#define WIN(L, x, oy, ox) ((x) + ((size_t)(oy) * (L)->stride * (L)->iw + (size_t)(ox) * (L)->stride) * (L)->ib)
#define OUT(L, y, oy, ox) ((y) + ((size_t)((oy) + (L)->q) * ((L)->ow + 2 * (L)->q) + (ox) + (L)->q) * (L)->ob)

/* Bits of a binary window's row-final words that lie past the row: the mask of them (0 when the
 * row fills its last word). */
static inline uint64_t junk_mask(const xf_layer *L)
{
    int tail = L->kern * L->ib - 8 * (L->nw - 1); /* bytes of the last word in the row: 1..8 */
    return tail == 8 ? 0 : ~0ULL << (8 * tail);
}

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

static void conv_u8_portable(const xf_layer *L, const void *xv, int xs, const int32_t *sx,
                             int nf, uint8_t *y, int ys, int32_t *s, int ss)
{
    const int8_t *w = (const int8_t *)L->w;
    const int rs = L->iw * L->ib;
    (void)sx, (void)s, (void)ss;
    for (int f = 0; f < nf; f++)
        for (int oy = 0; oy < L->oh; oy++)
            for (int ox = 0; ox < L->ow; ox++) {
                const uint8_t *p = WIN(L, (const uint8_t *)xv + (size_t)f * xs, oy, ox);
                uint8_t *o = OUT(L, y + (size_t)f * ys, oy, ox);
                for (int j = 0; j < L->ob; j++) o[j] = 0;
                for (int row = 0; row < L->m; row++) {
                    const int8_t *wr = w + (size_t)(row / 16) * L->kern * L->nw * 64 + 4 * (row % 16);
                    int32_t acc = 0;
                    for (int ky = 0; ky < L->kern; ky++)
                        for (int st = 0; st < L->nw; st++)
                            for (int j = 0; j < 4; j++)
                                acc += wr[(ky * L->nw + st) * 64 + j] * p[ky * rs + 4 * st + j];
                    o[row / 8] |= (uint8_t)((acc >= L->bound[row]) << (row % 8));
                }
            }
}

static void conv_bits_portable(const xf_layer *L, const void *xv, int xs, const int32_t *sx,
                               int nf, uint8_t *y, int ys, int32_t *s, int ss)
{
    const int rs = L->iw * L->ib, t = L->kern * L->nw;
    const uint64_t junk = junk_mask(L);
    (void)sx, (void)s, (void)ss;
    for (int f = 0; f < nf; f++)
        for (int oy = 0; oy < L->oh; oy++)
            for (int ox = 0; ox < L->ow; ox++) {
                const uint8_t *p = WIN(L, (const uint8_t *)xv + (size_t)f * xs * 8, oy, ox);
                uint8_t *o = OUT(L, y + (size_t)f * ys, oy, ox);
                int32_t extra = 0;
                for (int ky = 0; ky < L->kern; ky++)
                    extra += __builtin_popcountll(load64(p + ky * rs + 8 * (L->nw - 1)) & junk);
                for (int j = 0; j < L->ob; j++) o[j] = 0;
                for (int row = 0; row < L->m; row++) {
                    const uint64_t *wr = L->w + (size_t)(row / 8) * t * 8 + row % 8;
                    int32_t c = -extra;
                    for (int ky = 0; ky < L->kern; ky++)
                        for (int i = 0; i < L->nw; i++)
                            c += __builtin_popcountll(wr[8 * (ky * L->nw + i)] ^ load64(p + ky * rs + 8 * i));
                    o[row / 8] |= (uint8_t)((c <= L->bound[row]) << (row % 8));
                }
            }
}

/* Max-pooling on bits, every isa: per output pixel 8 bytes of channels at a time, the OR and
 * the AND of the window's pixels, picked per channel by `rise` (padded to whole 8 bytes). A
 * pixel's last 8 bytes may run past it: into the next pixel's bytes, written after it, or into
 * the margin and the tail, which run_job writes after the kernel. */
static void pool_any(const xf_layer *L, const void *xv, int xs, const int32_t *sx, int nf,
                     uint8_t *y, int ys, int32_t *s, int ss)
{
    const int k = L->kern, ib = L->ib;
    (void)sx, (void)s, (void)ss;
    for (int f = 0; f < nf; f++)
        for (int oy = 0; oy < L->oh; oy++)
            for (int ox = 0; ox < L->ow; ox++) {
                const uint8_t *p = WIN(L, (const uint8_t *)xv + (size_t)f * xs * 8, oy, ox);
                uint8_t *o = OUT(L, y + (size_t)f * ys, oy, ox);
                for (int j = 0; j < ib; j += 8) {
                    uint64_t any = 0, all = ~0ULL, r = load64(L->rise + j);
                    for (int i = 0; i < k; i++)
                        for (int jj = 0; jj < k; jj++) {
                            uint64_t v = load64(p + ((size_t)i * L->iw + jj) * ib + j);
                            any |= v, all &= v;
                        }
                    any = (any & r) | (all & ~r);
                    memcpy(o + j, &any, 8);
                }
            }
}

/* ---- AVX-512 (F, BW, VNNI, VPOPCNTDQ) and GFNI ----------------------------------------------------- */
#ifdef XF_X86
#define T512 __attribute__((target("avx512f,avx512bw,avx512vnni,avx512vpopcntdq,gfni,popcnt")))
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

/* Convolutions: a tile is nr channel blocks (from block b0) x nx consecutive output pixels of one
 * row, at most 16 accumulators. The window words are broadcast from the map and reused over the
 * nr blocks, each block's weights loaded once per word and reused over the nx pixels. The first
 * pixel's window starts at p, the next ones ps = S*ib bytes further; rows are rs bytes apart;
 * the first pixel's output bytes are at o, the next ones ob bytes further. */
#define CASE(R, F) case (R) * 16 + (F): CALL(R, F); break;
#define SWITCH_4x4 switch (nr * 16 + nx) { CASE(1, 1) CASE(1, 2) CASE(1, 3) CASE(1, 4)      \
    CASE(2, 1) CASE(2, 2) CASE(2, 3) CASE(2, 4) CASE(3, 1) CASE(3, 2) CASE(3, 3) CASE(3, 4)  \
    CASE(4, 1) CASE(4, 2) CASE(4, 3) default: CALL(4, 4); }
#define SWITCH_2x8 switch (nr * 16 + nx) { CASE(1, 1) CASE(1, 2) CASE(1, 3) CASE(1, 4)      \
    CASE(1, 5) CASE(1, 6) CASE(1, 7) CASE(1, 8) CASE(2, 1) CASE(2, 2) CASE(2, 3) CASE(2, 4)  \
    CASE(2, 5) CASE(2, 6) CASE(2, 7) default: CALL(2, 8); }
#define SWITCH_1x4 switch (nx) { case 1: CALL(1, 1); break; case 2: CALL(1, 2); break;       \
    case 3: CALL(1, 3); break; default: CALL(1, 4); }

/* Every output pixel of nf frames: along each row FMAX pixels at a time, the junk count of
 * each (binary windows whose rows end inside a word), then the tiles over the channel blocks,
 * RMAX blocks at a time. x: the input maps, xstep bytes apart; y: the outputs, ys apart. */
#define CONV_ROWS(BLOCKS, RMAX, FMAX, JUNK, SWITCH)                                    \
    for (int f = 0; f < nf; f++)                                                       \
        for (int oy = 0; oy < L->oh; oy++) {                                           \
            const uint8_t *row = WIN(L, x + (size_t)f * xstep, oy, 0);                 \
            uint8_t *orow = OUT(L, y + (size_t)f * ys, oy, 0);                         \
            for (int ox = 0; ox < L->ow; ox += (FMAX)) {                               \
                const uint8_t *p = row + (size_t)ox * ps;                              \
                uint8_t *o = orow + (size_t)ox * L->ob;                                \
                int32_t extra[FMAX] = {0};                                             \
                int nx = L->ow - ox < (FMAX) ? L->ow - ox : (FMAX);                    \
                if (JUNK)                                                              \
                    for (int j = 0; j < nx; j++)                                       \
                        for (int ky = 0; ky < L->kern; ky++)                           \
                            extra[j] += __builtin_popcountll(                          \
                                load64(p + j * ps + ky * rs + 8 * (L->nw - 1)) & junk);\
                for (int b0 = 0, nr; b0 < (BLOCKS); b0 += nr) {                        \
                    nr = (BLOCKS) - b0 < (RMAX) ? (BLOCKS) - b0 : (RMAX);              \
                    SWITCH                                                             \
                }                                                                      \
            }                                                                          \
        }

/* Set up for CONV_ROWS: the input as bytes, its frame stride, pixel and row strides. */
#define CONV_ARGS(XSTEP)                                                               \
    const uint8_t *x = xv;                                                             \
    const size_t xstep = (XSTEP);                                                      \
    const int rs = L->iw * L->ib, ps = L->stride * L->ib;                              \
    (void)sx, (void)s, (void)ss

/* 16 channels per block (one int32 lane each, 4 pixels per vpdpbusd step) */
T512 INL void conv_u8_tile512(const xf_layer *L, int b0, const int nr, const uint8_t *p, int ps,
                              const int nx, uint8_t *o, int rs)
{
    __m512i acc[16]; /* [r * nx + j] */
    const uint8_t *w = (const uint8_t *)L->w + (size_t)b0 * L->kern * L->nw * 64;
#pragma GCC unroll 16
    for (int i = 0; i < nr * nx; i++) acc[i] = _mm512_setzero_si512();
    for (int ky = 0; ky < L->kern; ky++)
        for (int st = 0; st < L->nw; st++) {
            __m512i wv[2];
#pragma GCC unroll 2
            for (int r = 0; r < nr; r++)
                wv[r] = _mm512_loadu_si512(w + (((size_t)r * L->kern + ky) * L->nw + st) * 64);
            const uint8_t *pk = p + ky * rs + 4 * st;
#pragma GCC unroll 8
            for (int j = 0; j < nx; j++) {
                __m512i xb = _mm512_set1_epi32((int32_t)load32(pk + j * ps));
#pragma GCC unroll 2
                for (int r = 0; r < nr; r++) acc[r * nx + j] = _mm512_dpbusd_epi32(acc[r * nx + j], xb, wv[r]);
            }
        }
#pragma GCC unroll 2
    for (int r = 0; r < nr; r++) {
        int blk = b0 + r;
        __m512i t = _mm512_loadu_si512(L->bound + 16 * blk);
#pragma GCC unroll 8
        for (int j = 0; j < nx; j++) {
            uint16_t m = _mm512_cmpge_epi32_mask(acc[r * nx + j], t);
            if (L->ob - 2 * blk >= 2) memcpy(o + j * L->ob + 2 * blk, &m, 2);
            else o[j * L->ob + 2 * blk] = (uint8_t)m;
        }
    }
}

/* 8 channels per block (one 64-bit lane each) */
T512 INL void conv_bits_tile512(const xf_layer *L, int b0, const int nr, const uint8_t *p, int ps,
                                const int32_t *extra, const int nx, uint8_t *o, int rs)
{
    __m512i acc[16]; /* [r * nx + j] */
    const int t = L->kern * L->nw;
    const uint64_t *w = L->w + (size_t)b0 * t * 8;
#pragma GCC unroll 16
    for (int i = 0; i < nr * nx; i++) acc[i] = _mm512_setzero_si512();
    for (int ky = 0; ky < L->kern; ky++)
        for (int i = 0; i < L->nw; i++) {
            __m512i wv[4];
#pragma GCC unroll 4
            for (int r = 0; r < nr; r++) wv[r] = _mm512_loadu_si512(w + ((size_t)r * t + ky * L->nw + i) * 8);
            const uint8_t *pk = p + ky * rs + 8 * i;
#pragma GCC unroll 4
            for (int j = 0; j < nx; j++) {
                __m512i av = _mm512_set1_epi64((long long)load64(pk + j * ps));
#pragma GCC unroll 4
                for (int r = 0; r < nr; r++)
                    acc[r * nx + j] = _mm512_add_epi64(acc[r * nx + j], _mm512_popcnt_epi64(_mm512_xor_si512(wv[r], av)));
            }
        }
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++) {
        __m512i b = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(L->bound + 8 * (b0 + r))));
#pragma GCC unroll 4
        for (int j = 0; j < nx; j++) /* c - extra <= bound */
            o[j * L->ob + b0 + r] = (uint8_t)_mm512_cmple_epi64_mask(
                acc[r * nx + j], _mm512_add_epi64(b, _mm512_set1_epi64(extra[j])));
    }
}

T512 static void conv_u8_avx512(const xf_layer *L, const void *xv, int xs, const int32_t *sx,
                                int nf, uint8_t *y, int ys, int32_t *s, int ss)
{
    CONV_ARGS((size_t)xs);
    const uint64_t junk = 0;
#define CALL(R, F) conv_u8_tile512(L, b0, R, p, ps, F, o, rs)
    CONV_ROWS(L->mp / 16, 2, 8, 0, SWITCH_2x8)
#undef CALL
}

T512 static void conv_bits_avx512(const xf_layer *L, const void *xv, int xs, const int32_t *sx,
                                  int nf, uint8_t *y, int ys, int32_t *s, int ss)
{
    CONV_ARGS((size_t)xs * 8);
    const uint64_t junk = junk_mask(L);
#define CALL(R, F) conv_bits_tile512(L, b0, R, p, ps, extra, F, o, rs)
    if (junk) { CONV_ROWS(L->mp / 8, 4, 4, 1, SWITCH_4x4) }
    else { CONV_ROWS(L->mp / 8, 4, 4, 0, SWITCH_4x4) }
#undef CALL
}

/* ---- AVX2 ------------------------------------------------------------------------------ */
#define T256 __attribute__((target("avx2,popcnt")))
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

/* 16 channels (2 halves of 8) x up to 4 pixels */
T256 INL void conv_u8_tile256(const xf_layer *L, int blk, const uint8_t *p, int ps, const int nx,
                              uint8_t *o, int rs)
{
    __m256i acc[2][4];
    const __m256i ones = _mm256_set1_epi16(1);
    const uint8_t *w = (const uint8_t *)L->w + (size_t)blk * L->kern * L->nw * 64;
#pragma GCC unroll 4
    for (int j = 0; j < nx; j++) acc[0][j] = acc[1][j] = _mm256_setzero_si256();
    for (int ky = 0; ky < L->kern; ky++)
        for (int st = 0; st < L->nw; st++) {
            const uint8_t *wp = w + ((size_t)ky * L->nw + st) * 64, *pk = p + ky * rs + 4 * st;
            __m256i wv[2] = {_mm256_loadu_si256((const __m256i *)wp),
                             _mm256_loadu_si256((const __m256i *)(wp + 32))};
#pragma GCC unroll 4
            for (int j = 0; j < nx; j++) {
                __m256i xb = _mm256_set1_epi32((int32_t)load32(pk + j * ps));
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) /* u8 x s8 pairs: |2 * 255| fits int16 */
                    acc[h][j] = _mm256_add_epi32(acc[h][j], _mm256_madd_epi16(_mm256_maddubs_epi16(xb, wv[h]), ones));
            }
        }
    int bytes = L->ob - 2 * blk < 2 ? 1 : 2;
    __m256i t[2];
    for (int h = 0; h < 2; h++) /* acc >= T  <=>  acc > T - 1 (T is far from INT32_MIN) */
        t[h] = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(L->bound + 16 * blk + 8 * h)),
                                _mm256_set1_epi32(1));
#pragma GCC unroll 4
    for (int j = 0; j < nx; j++)
        for (int h = 0; h < bytes; h++)
            o[j * L->ob + 2 * blk + h] =
                (uint8_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(acc[h][j], t[h])));
}

/* 8 channels (2 halves of 4) x up to 4 pixels; byte counts summed for up to 31 words (at most
 * 8 x 31 = 248 per byte) before vpsadbw widens them */
T256 INL void conv_bits_tile256(const xf_layer *L, int blk, const uint8_t *p, int ps,
                                const int32_t *extra, const int nx, uint8_t *o, int rs)
{
    __m256i acc[2][4], cnt[2][4];
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i lo = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    const int t = L->kern * L->nw;
    const uint64_t *w = L->w + (size_t)blk * t * 8;
    int pending = 0;
#pragma GCC unroll 4
    for (int j = 0; j < nx; j++) acc[0][j] = acc[1][j] = cnt[0][j] = cnt[1][j] = zero;
    for (int ky = 0; ky < L->kern; ky++)
        for (int i = 0; i < L->nw; i++) {
            const uint64_t *wp = w + ((size_t)ky * L->nw + i) * 8;
            const uint8_t *pk = p + ky * rs + 8 * i;
            __m256i wv[2] = {_mm256_loadu_si256((const __m256i *)wp),
                             _mm256_loadu_si256((const __m256i *)(wp + 4))};
#pragma GCC unroll 4
            for (int j = 0; j < nx; j++) {
                __m256i av = _mm256_set1_epi64x((long long)load64(pk + j * ps));
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) {
                    __m256i v = _mm256_xor_si256(wv[h], av);
                    cnt[h][j] = _mm256_add_epi8(cnt[h][j], _mm256_add_epi8(
                        _mm256_shuffle_epi8(lut, _mm256_and_si256(v, lo)),
                        _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), lo))));
                }
            }
            if (++pending == 31) {
                pending = 0;
#pragma GCC unroll 4
                for (int j = 0; j < nx; j++)
                    for (int h = 0; h < 2; h++) {
                        acc[h][j] = _mm256_add_epi64(acc[h][j], _mm256_sad_epu8(cnt[h][j], zero));
                        cnt[h][j] = zero;
                    }
            }
        }
    __m256i b[2];
    for (int h = 0; h < 2; h++)
        b[h] = _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(L->bound + 8 * blk + 4 * h)));
#pragma GCC unroll 4
    for (int j = 0; j < nx; j++) {
        int bits = 0;
        for (int h = 0; h < 2; h++) { /* c - extra <= bound  <=>  !(c > bound + extra) */
            __m256i c = _mm256_add_epi64(acc[h][j], _mm256_sad_epu8(cnt[h][j], zero));
            __m256i bx = _mm256_add_epi64(b[h], _mm256_set1_epi64x(extra[j]));
            bits |= (~_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(c, bx))) & 15) << (4 * h);
        }
        o[j * L->ob + blk] = (uint8_t)bits;
    }
}

T256 static void conv_u8_avx2(const xf_layer *L, const void *xv, int xs, const int32_t *sx,
                              int nf, uint8_t *y, int ys, int32_t *s, int ss)
{
    CONV_ARGS((size_t)xs);
    const uint64_t junk = 0;
#define CALL(R, F) conv_u8_tile256(L, b0, p, ps, F, o, rs)
    CONV_ROWS(L->mp / 16, 1, 4, 0, SWITCH_1x4) /* AVX2 has 16 registers: one block per tile */
#undef CALL
}

T256 static void conv_bits_avx2(const xf_layer *L, const void *xv, int xs, const int32_t *sx,
                                int nf, uint8_t *y, int ys, int32_t *s, int ss)
{
    CONV_ARGS((size_t)xs * 8);
    const uint64_t junk = junk_mask(L);
#define CALL(R, F) conv_bits_tile256(L, b0, p, ps, extra, F, o, rs)
    if (junk) { CONV_ROWS(L->mp / 8, 1, 4, 1, SWITCH_1x4) }
    else { CONV_ROWS(L->mp / 8, 1, 4, 0, SWITCH_1x4) }
#undef CALL
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
    case XF_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
    case XF_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vpopcntdq") &&
               __builtin_cpu_supports("gfni") && __builtin_cpu_supports("popcnt");
#endif
#ifdef XF_ARM
    case XF_NEON: return 1; /* Advanced SIMD is part of every AArch64 CPU */
#endif
    default: return 0;
    }
}

/* The kernel of each layer kind for isa. NEON has its own binary dense kernel; its other layers
 * run the portable C (compiled for AArch64, where the compiler vectorises the loops). */
static int kernels(int isa, layer_fn fn[XF_KINDS])
{
    if (!xf_isa_supported(isa)) return 0;
    fn[XF_DENSE_U8] = u8_portable;
    fn[XF_DENSE_BITS] = bits_portable;
    fn[XF_CONV_U8] = conv_u8_portable;
    fn[XF_CONV_BITS] = conv_bits_portable;
    fn[XF_POOL] = pool_any;
#ifdef XF_X86
    if (isa == XF_AVX2) {
        fn[XF_DENSE_U8] = u8_avx2; fn[XF_DENSE_BITS] = bits_avx2;
        fn[XF_CONV_U8] = conv_u8_avx2; fn[XF_CONV_BITS] = conv_bits_avx2;
    }
    if (isa == XF_AVX512) {
        fn[XF_DENSE_U8] = u8_avx512; fn[XF_DENSE_BITS] = bits_avx512;
        fn[XF_CONV_U8] = conv_u8_avx512; fn[XF_CONV_BITS] = conv_bits_avx512;
    }
#endif
#ifdef XF_ARM
    if (isa == XF_NEON) fn[XF_DENSE_BITS] = bits_neon;
#endif
    return 1;
}

static int is_map(const xf_layer *L) { return L->kind >= XF_CONV_U8; }

/* Bytes of a frame's slot for layer L's output: the map with its margin, then at least 8 zero
 * bytes (a binary window's last word and a dense layer's last input word read into them). */
static size_t map_slot(const xf_layer *L)
{
    size_t bytes = (size_t)(L->oh + 2 * L->q) * (L->ow + 2 * L->q) * L->ob;
    return (bytes / 8 + 2) * 8;
}

/* After layer L's kernel has written the inside of its output maps (nf frames, slot ys bytes):
 * the margin pixels set to L->fill, the bytes after the map zeroed. */
static void frame_map(const xf_layer *L, uint8_t *y, int ys, int nf)
{
    int rows = L->oh + 2 * L->q, cols = L->ow + 2 * L->q, q = L->q, ob = L->ob;
    size_t bytes = (size_t)rows * cols * ob;
    for (int f = 0; f < nf; f++) {
        uint8_t *m = y + (size_t)f * ys;
        for (int r = 0; r < rows && q; r++)
            for (int c = 0; c < cols; c++) {
                if (r >= q && r < rows - q && c == q) c = cols - q; /* skip the inside */
                memcpy(m + ((size_t)r * cols + c) * ob, L->fill, ob);
            }
        memset(m + bytes, 0, map_slot(L) - bytes);
    }
}

typedef struct {
    const xf_layer *layers;
    int nl;
    const uint8_t *frames;
    int64_t batch, *next; /* frames are taken fblock at a time from the shared *next */
    int64_t *scores, *classes;
    int fblock;
    layer_fn fn[XF_KINDS];
    int status;
} job;

static void *run_job(void *arg)
{
    job *J = arg;
    const xf_layer *L = J->layers;
    const int conv0 = L[0].kind == XF_CONV_U8, fblock = J->fblock;
    /* The frame as layer 0 reads it: dense, padded to whole 4-pixel steps; a convolution, the
     * map with its padding (pad value V) and 4 bytes more for its last step. */
    int n0 = L[0].n, xs = conv0 ? (L[0].ih * L[0].iw * L[0].ib + 7) / 4 * 4 : 4 * L[0].k;
    int aw = 1, sw = L[J->nl - 1].mp, classes = L[J->nl - 1].m;
    for (int l = 0; l < J->nl; l++) {
        int words = is_map(&L[l]) ? (int)(map_slot(&L[l]) / 8) : L[l].mp / 64 + 1;
        if (words > aw) aw = words;
    }
    size_t fb = J->batch < fblock ? (size_t)J->batch : (size_t)fblock;
    int copy = conv0 || xs != n0;
    uint8_t *xbuf = copy ? calloc(fb * xs, 1) : NULL;
    uint64_t *act[2] = {malloc(fb * aw * 8), malloc(fb * aw * 8)};
    int32_t *sbuf = malloc(fb * sw * 4), sx[FBLOCK];
    if ((copy && !xbuf) || !act[0] || !act[1] || !sbuf) { J->status = -1; goto done; }
    if (conv0) /* the padding never changes: written once */
        for (size_t f = 0; f < fb; f++) memset(xbuf + f * xs, L[0].pad_value, (size_t)L[0].ih * L[0].iw * L[0].ib);
    for (int64_t f0; (f0 = __atomic_fetch_add(J->next, fblock, __ATOMIC_RELAXED)) < J->batch;) {
        int nf = J->batch - f0 < fblock ? (int)(J->batch - f0) : fblock;
        const uint8_t *fr = J->frames + (size_t)f0 * n0;
        const void *x = fr;
        int stride = n0;
        if (conv0) { /* each row of the frame into the padded map */
            int p = L[0].pad, row = (L[0].iw - 2 * p) * L[0].ib, h = L[0].ih - 2 * p;
            for (int f = 0; f < nf; f++)
                for (int r = 0; r < h; r++)
                    memcpy(xbuf + (size_t)f * xs + ((size_t)(r + p) * L[0].iw + p) * L[0].ib,
                           fr + (size_t)f * n0 + (size_t)r * row, row);
        } else if (copy) { /* pad each frame to whole 4-pixel steps */
            for (int f = 0; f < nf; f++) memcpy(xbuf + (size_t)f * xs, fr + (size_t)f * n0, n0);
        }
        if (copy) x = xbuf, stride = xs;
        if (L[0].kind == XF_DENSE_U8)
            for (int f = 0; f < nf; f++) {
                int32_t t = 0;
                for (int j = 0; j < n0; j++) t += fr[(size_t)f * n0 + j];
                sx[f] = t;
            }
        for (int l = 0; l < J->nl; l++) {
            uint64_t *y = act[l & 1];
            if (!is_map(&L[l]) && L[l].bound) memset(y, 0, (size_t)nf * aw * 8);
            J->fn[L[l].kind](&L[l], x, stride, sx, nf, (uint8_t *)y, aw * 8, sbuf, sw);
            if (is_map(&L[l])) frame_map(&L[l], (uint8_t *)y, aw * 8, nf);
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

/* Run nl layers on batch frames (uint8, batch x n0, contiguous; n0 = layers[0].n, a map's
 * pixels for a convolution). Writes into out the int64 scores (batch x classes), then the
 * classes (batch). threads: how many threads share the batch (at most one per 16 frames), each
 * taking the next block of frames when it is free. Returns 0, -1 (out of memory) or -2 (isa not
 * supported). */
int xf_run(const xf_layer *layers, int nl, const uint8_t *frames, int64_t batch, int64_t *out,
           int isa, int threads)
{
    enum { MAXT = 256 };
    job jobs[MAXT];
    pthread_t tid[MAXT];
    int started[MAXT] = {0}, status = 0, fblock = FBLOCK;
    int64_t next = 0; /* the first frame no thread has taken yet */
    layer_fn fn[XF_KINDS];
    if (!kernels(isa, fn)) return -2;
    for (int l = 0; l < nl; l++)
        if (is_map(&layers[l])) fblock = FBLOCK_MAP;
    if (threads > (batch + 15) / 16) threads = (int)((batch + 15) / 16);
    if (threads > MAXT) threads = MAXT;
    if (threads < 1) threads = 1;
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job){layers, nl, frames, batch, &next, out, out + batch * layers[nl - 1].m,
                        fblock, {0}, 0};
        memcpy(jobs[t].fn, fn, sizeof fn);
    }
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
