/* CPU kernels that do in one pass over memory what the PyTorch path does in several: bias_act
 * (forward and derivative), StyleGAN2's demodulation + noise + bias_act (demod_bias_act) and the
 * derivative of its input modulation (scale_channels), strided depthwise transposed convolutions, and
 * the weights of reduced-precision convolutions (cast, gain and squared tap sums: weight_cast).
 * For float32 and bfloat16 tensors. Built with the system C compiler at first use and called through
 * ctypes (torch_utils/ops/cpu_kernels.py); see docs/ops.md, "CPU kernels".
 *
 * Every value is computed in float32 and rounded once when stored. For float32 tensors the
 * operations and their order are those of the PyTorch path, so values are bit-identical to it (the
 * sums of the backward passes add in another order); for bfloat16 tensors the PyTorch path rounds
 * after each operation and these kernels only at the end (as the CUDA kernels do with float16 and
 * bfloat16).
 *
 * bias_act sees memory as [outer, channels, inner] with the bias along `channels`: a contiguous
 * tensor with the bias on dimension d has outer = prod(shape[:d]) and inner = prod(shape[d+1:]); a
 * channels_last image batch has outer = N*H*W and inner = 1. Without a bias, channels = 1. */

#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>
#endif

#define CHUNK 8192                          /* Elements per work unit of a thread. */
#define PARALLEL_MIN 32768                  /* Below this many elements, one thread. */

enum { ACT_LINEAR = 0, ACT_RELU = 1, ACT_LRELU = 2 };

typedef struct {
    int act;
    float alpha, gain, clamp;               /* clamp < 0: no clamping. */
} params_t;

/* Threads for a call over `count` elements, and the bytes of one element of a dtype (0: float32, 1: bfloat16). */
static inline int team_size(long count, int num_threads) {
    return (count >= PARALLEL_MIN && num_threads > 1) ? num_threads : 1;
}

static inline long elem_size(int dtype) {
    return (dtype == 0) ? 4 : 2;
}

/* The start of a function that runs one dtype-specialised kernel per sample n of an [N, C, H, W] tensor:
 * `size` bytes per element, and the threads for `count` elements on the loop that follows. Inside it,
 * n * C * HW * size is a sample's byte offset and n * C * size its offset in an [N, C] tensor. */
#define PER_SAMPLE_LOOP(dtype, count, num_threads)                                                     \
    long size = elem_size(dtype);                                                                      \
    int threads __attribute__((unused)) = team_size(count, num_threads);                                                       \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")

/* Pointer `bytes` past p, as T. */
#define AT(T, p, bytes) ((T)((const char *)(p) + (bytes)))

static inline float bf16_load(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even; NaN stays a (quiet) NaN. */
static inline uint16_t bf16_store(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = (u >> 16) | 0x40u;
    return (uint16_t)(((u & 0x7fffffffu) > 0x7f800000u) ? nan : rounded);
}

/* n float32 values to bfloat16, each as bf16_store rounds it. With AVX512-BF16 (compiled for such a CPU),
 * 16 at a time by its conversion instruction, which rounds the same way but reads float32 denormals as
 * zero: a group of 16 holding one takes bf16_store instead. */
static inline void bf16_store_floats(uint16_t *restrict out, const float *restrict v, long n) {
    long i = 0;
#if defined(__AVX512BF16__) && defined(__AVX512F__)
    const __m512i exponent = _mm512_set1_epi32(0x7f800000), fraction = _mm512_set1_epi32(0x007fffff);
    for (; i + 16 <= n; i += 16) {
        __m512i u = _mm512_loadu_si512((const void *)(v + i));
        if (_mm512_testn_epi32_mask(u, exponent) & _mm512_test_epi32_mask(u, fraction)) {
            for (long j = i; j < i + 16; j++)
                out[j] = bf16_store(v[j]);
            continue;
        }
        _mm256_storeu_si256((__m256i *)(out + i), (__m256i)_mm512_cvtneps_pbh(_mm512_castsi512_ps(u)));
    }
#endif
    for (; i < n; i++)
        out[i] = bf16_store(v[i]);
}

/* Group stores by element type: float32 values are computed straight into the output (TMP gives the output
 * pointer, FLUSH does nothing), bfloat16 ones into a float buffer of GROUP elements, then stored. */
#define GROUP 512
#define F32_TMP(dst, buf) (dst)
#define F32_FLUSH(dst, buf, n) ((void)0)
#define BF16_TMP(dst, buf) (buf)
#define BF16_FLUSH(dst, buf, n) bf16_store_floats((dst), (buf), (n))

static inline float forward_value(float v, params_t p) {
    if (p.act == ACT_RELU)
        v = (v < 0.0f) ? 0.0f : v;
    else if (p.act == ACT_LRELU)
        v = (v > 0.0f) ? v : v * p.alpha;
    if (p.gain != 1.0f)
        v = v * p.gain;
    if (p.clamp >= 0.0f)
        v = (v < -p.clamp) ? -p.clamp : ((v > p.clamp) ? p.clamp : v);
    return v;
}

static inline float grad_value(float dy, float y, params_t p) {
    float d = dy;
    if (p.clamp >= 0.0f)
        d = (y > -p.clamp && y < p.clamp) ? d : 0.0f;      /* NaN: 0, as ATen's kernels. */
    if (p.gain != 1.0f)
        d = d * p.gain;
    if (p.act == ACT_RELU)
        d = (y <= 0.0f) ? 0.0f : d;                        /* NaN passes, as ATen's threshold_backward. */
    else if (p.act == ACT_LRELU)
        d = (y > 0.0f) ? d : d * p.alpha;
    return d;
}

/* Forward over `count` whole rows of `channels` elements from element `start`, with the bias vector b
 * (channels_last: the bias runs along the fastest dimension); and over elements [start, end) with one
 * bias value (b NULL: none). Short rows go in blocks of whole rows against the bias repeated in a float
 * buffer: one long loop instead of a short one per row (the values are the same: x + b, then the rest).
 * Values are stored in groups (F32_TMP / BF16_TMP above). */
#define DEFINE_ROWS(NAME, T, LOAD, TMP, FLUSH)                                                          \
static void NAME##_forward_rows(T *out, const T *x, const T *b, long start, long count, long channels,  \
                                params_t p) {                                                          \
    long end = start + count * channels, reps = GROUP / channels;                                      \
    float buf[GROUP] __attribute__((unused));                                                          \
    if (reps > 1 && count > 1) {                                                                       \
        float bias[GROUP];                                                                             \
        long block = ((count < reps) ? count : reps) * channels;                                       \
        for (long r = 0; r < block; r += channels)                                                     \
            for (long c = 0; c < channels; c++)                                                        \
                bias[r + c] = LOAD(b[c]);                                                              \
        for (long r = start; r < end; r += block) {                                                    \
            long n = (end - r < block) ? end - r : block;                                              \
            float *t = TMP(out + r, buf);                                                              \
            for (long j = 0; j < n; j++)                                                               \
                t[j] = forward_value(LOAD(x[r + j]) + bias[j], p);                                     \
            FLUSH(out + r, buf, n);                                                                    \
        }                                                                                              \
        return;                                                                                        \
    }                                                                                                  \
    for (long r = start; r < end; r += channels)                                                       \
        for (long c0 = 0; c0 < channels; c0 += GROUP) {                                                \
            long n = (channels - c0 < GROUP) ? channels - c0 : GROUP;                                  \
            float *t = TMP(out + r + c0, buf);                                                         \
            for (long c = 0; c < n; c++)                                                               \
                t[c] = forward_value(LOAD(x[r + c0 + c]) + LOAD(b[c0 + c]), p);                        \
            FLUSH(out + r + c0, buf, n);                                                               \
        }                                                                                              \
}                                                                                                      \
static void NAME##_forward_range(T *out, const T *x, const T *b, long start, long end, params_t p) {     \
    float buf[GROUP] __attribute__((unused)), bias = (b != NULL) ? LOAD(*b) : 0.0f;                    \
    for (long i = start; i < end; i += GROUP) {                                                        \
        long n = (end - i < GROUP) ? end - i : GROUP;                                                  \
        float *t = TMP(out + i, buf);                                                                  \
        if (b != NULL) {                                                                               \
            for (long j = 0; j < n; j++)                                                               \
                t[j] = forward_value(LOAD(x[i + j]) + bias, p);                                        \
        } else {                                                                                       \
            for (long j = 0; j < n; j++)                                                               \
                t[j] = forward_value(LOAD(x[i + j]), p);                                               \
        }                                                                                              \
        FLUSH(out + i, buf, n);                                                                        \
    }                                                                                                  \
}                                                                                                      \
static void NAME##_grad_range(T *out, const T *dy, const T *y, long start, long end, params_t p) {     \
    float buf[GROUP] __attribute__((unused));                                                          \
    for (long i = start; i < end; i += GROUP) {                                                        \
        long n = (end - i < GROUP) ? end - i : GROUP;                                                  \
        float *t = TMP(out + i, buf);                                                                  \
        for (long j = 0; j < n; j++)                                                                   \
            t[j] = grad_value(LOAD(dy[i + j]), LOAD(y[i + j]), p);                                     \
        FLUSH(out + i, buf, n);                                                                        \
    }                                                                                                  \
}

static inline float f32_load(float v) { return v; }
static inline float f32_store(float v) { return v; }

/* bias_act's kernels are element-wise (no sums, so no order to keep): 512-bit vectors where the CPU has
 * them (GCC prefers 256 by default; 1.25-1.4x on an AMX Xeon, docs/ops.md). Compilers without this pragma
 * ignore it. */
#pragma GCC push_options
#pragma GCC target("prefer-vector-width=512")
DEFINE_ROWS(f32, float, f32_load, F32_TMP, F32_FLUSH)
DEFINE_ROWS(bf16, uint16_t, bf16_load, BF16_TMP, BF16_FLUSH)

/* dtype: 0 = float32, 1 = bfloat16. out may be x (in place). b may be NULL (then channels is 1).
 * A bias vector along the fastest dimension (inner == 1): work units of whole rows, about CHUNK
 * elements each; otherwise rows of `inner` elements with one bias value, cut into chunks of CHUNK. */
int bias_act_cpu_forward(int dtype, void *out, const void *x, const void *b, long outer, long channels,
                         long inner, int act, float alpha, float gain, float clamp, int num_threads) {
    params_t p = { act, alpha, gain, clamp };
    long size = elem_size(dtype);
    int threads __attribute__((unused)) = team_size(outer * channels * inner, num_threads);
    if (channels < 1 || inner < 1)
        return 0;
    if (b != NULL && inner == 1) {
        long rows_per_unit = (channels < CHUNK) ? CHUNK / channels : 1;
        #pragma omp parallel for num_threads(threads) schedule(static)
        for (long first = 0; first < outer; first += rows_per_unit) {
            long count = (outer - first < rows_per_unit) ? outer - first : rows_per_unit;
            if (dtype == 0)
                f32_forward_rows((float *)out, (const float *)x, (const float *)b, first * channels, count, channels, p);
            else
                bf16_forward_rows((uint16_t *)out, (const uint16_t *)x, (const uint16_t *)b, first * channels, count, channels, p);
        }
        return 0;
    }
    long units_per_row = (inner + CHUNK - 1) / CHUNK, units = outer * channels * units_per_row;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long u = 0; u < units; u++) {
        long row = u / units_per_row, start = row * inner + (u % units_per_row) * CHUNK;
        long end = (start + CHUNK < (row + 1) * inner) ? start + CHUNK : (row + 1) * inner;
        const void *bias = (b != NULL) ? AT(const void *, b, (row % channels) * size) : NULL;
        if (dtype == 0)
            f32_forward_range((float *)out, (const float *)x, (const float *)bias, start, end, p);
        else
            bf16_forward_range((uint16_t *)out, (const uint16_t *)x, (const uint16_t *)bias, start, end, p);
    }
    return 0;
}

/* dx from dy and the forward output y, all of `count` elements in the same layout. out may be dy. */
int bias_act_cpu_grad(int dtype, void *out, const void *dy, const void *y, long count, int act, float alpha,
                      float gain, float clamp, int num_threads) {
    params_t p = { act, alpha, gain, clamp };
    long units = (count + CHUNK - 1) / CHUNK;
    int threads __attribute__((unused)) = team_size(count, num_threads);
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long u = 0; u < units; u++) {
        long start = u * CHUNK;
        long end = (start + CHUNK < count) ? start + CHUNK : count;
        if (dtype == 0)
            f32_grad_range((float *)out, (const float *)dy, (const float *)y, start, end, p);
        else
            bf16_grad_range((uint16_t *)out, (const uint16_t *)dy, (const uint16_t *)y, start, end, p);
    }
    return 0;
}
#pragma GCC pop_options

/*----------------------------------------------------------------------------
 * Demodulation, noise and bias_act in one pass (StyleGAN2's synthesis layers, reduced-precision
 * forms): y = bias_act(x * d[n, c] + noise[n, 0, h, w], b) for x [N, C, H, W] (contiguous or
 * channels_last), d [N, C], noise [N, H*W] or NULL, b [C]; all in x's dtype. x * d + noise is one
 * fused multiply-add, as torch.addcmul computes it, so float32 values equal the PyTorch path's.
 *
 * The derivative (without a graph of it) from dy, the output y and x, in the same pass: dx = g * d,
 * dd[n, c] = sum_hw g * x, dnoise[n, hw] = sum_c g and db[c] = sum_n,hw g, with g = bias_act's
 * derivative; the sums in float32 (dd, dnoise, db are float32 arrays; db_rows is [N, C] scratch),
 * in an order that does not depend on the number of threads. */

#define DEMOD_MAX_C 2048                    /* channels_last: d and b (and s) go to floats in slices of this many channels. */
#define DEFINE_DEMOD_FORWARD(NAME, T, LOAD, STORE, TMP, FLUSH)                                         \
static void NAME##_demod_forward_rows(T *out, const T *x, const float *dv, const T *noise, const float *bv, \
                                      long width, long stride, long HW, params_t p) {                  \
    float buf[DEMOD_MAX_C] __attribute__((unused));                                                    \
    for (long hw = 0; hw < HW; hw++) {                                                                 \
        const T *xr = x + hw * stride;                                                                 \
        float *t = TMP(out + hw * stride, buf);                                                        \
        if (noise != NULL) {                                                                           \
            float nz = LOAD(noise[hw]);                                                                \
            for (long c = 0; c < width; c++)                                                           \
                t[c] = forward_value(fmaf(LOAD(xr[c]), dv[c], nz) + bv[c], p);                         \
        } else {                                                                                       \
            for (long c = 0; c < width; c++)                                                           \
                t[c] = forward_value(LOAD(xr[c]) * dv[c] + bv[c], p);                                  \
        }                                                                                              \
        FLUSH(out + hw * stride, buf, width);                                                          \
    }                                                                                                  \
}                                                                                                      \
static void NAME##_demod_forward_sample(T *out, const T *x, const T *d, const T *noise, const T *b,    \
                                        long C, long HW, int channels_last, params_t p) {              \
    if (channels_last) {                                                                               \
        for (long c0 = 0; c0 < C; c0 += DEMOD_MAX_C) {                                                 \
            long width = (C - c0 < DEMOD_MAX_C) ? C - c0 : DEMOD_MAX_C;                                \
            float dv[DEMOD_MAX_C], bv[DEMOD_MAX_C];                                                    \
            for (long c = 0; c < width; c++) {                                                         \
                dv[c] = LOAD(d[c0 + c]);                                                               \
                bv[c] = LOAD(b[c0 + c]);                                                               \
            }                                                                                          \
            NAME##_demod_forward_rows(out + c0, x + c0, dv, noise, bv, width, C, HW, p);               \
        }                                                                                              \
    } else {                                                                                           \
        for (long c = 0; c < C; c++) {                                                                 \
            const T *xr = x + c * HW;                                                                  \
            T *yr = out + c * HW;                                                                      \
            float dc = LOAD(d[c]), bc = LOAD(b[c]);                                                    \
            if (noise != NULL) {                                                                       \
                for (long hw = 0; hw < HW; hw++)                                                       \
                    yr[hw] = STORE(forward_value(fmaf(LOAD(xr[hw]), dc, LOAD(noise[hw])) + bc, p));    \
            } else {                                                                                   \
                for (long hw = 0; hw < HW; hw++)                                                       \
                    yr[hw] = STORE(forward_value(LOAD(xr[hw]) * dc + bc, p));                          \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
}

#define DEFINE_DEMOD_GRAD(NAME, T, LOAD, STORE)                                                        \
static void NAME##_demod_grad_sample(T *dx, float *dd, float *dnoise, float *db, const T *dy,          \
                                     const T *y, const T *x, const T *d, long C, long HW,              \
                                     int channels_last, params_t p) {                                  \
    for (long c = 0; c < C; c++)                                                                       \
        dd[c] = db[c] = 0.0f;                                                                          \
    if (channels_last) {                                                                               \
        for (long hw = 0; hw < HW; hw++) {                                                             \
            long o = hw * C;                                                                           \
            float gsum = 0.0f;                                                                         \
            _Pragma("omp simd reduction(+:gsum)")                                                      \
            for (long c = 0; c < C; c++) {                                                             \
                float g = grad_value(LOAD(dy[o + c]), LOAD(y[o + c]), p);                              \
                dx[o + c] = STORE(g * LOAD(d[c]));                                                     \
                dd[c] += g * LOAD(x[o + c]);                                                           \
                db[c] += g;                                                                            \
                gsum += g;                                                                             \
            }                                                                                          \
            dnoise[hw] = gsum;                                                                         \
        }                                                                                              \
    } else {                                                                                           \
        for (long hw = 0; hw < HW; hw++)                                                               \
            dnoise[hw] = 0.0f;                                                                         \
        for (long c = 0; c < C; c++) {                                                                 \
            long o = c * HW;                                                                           \
            float dc = LOAD(d[c]), sd = 0.0f, sb = 0.0f;                                               \
            _Pragma("omp simd reduction(+:sd, sb)")                                                    \
            for (long hw = 0; hw < HW; hw++) {                                                         \
                float g = grad_value(LOAD(dy[o + hw]), LOAD(y[o + hw]), p);                            \
                dx[o + hw] = STORE(g * dc);                                                            \
                sd += g * LOAD(x[o + hw]);                                                             \
                sb += g;                                                                               \
                dnoise[hw] += g;                                                                       \
            }                                                                                          \
            dd[c] = sd;                                                                                \
            db[c] = sb;                                                                                \
        }                                                                                              \
    }                                                                                                  \
}

DEFINE_DEMOD_GRAD(f32, float, f32_load, f32_store)
DEFINE_DEMOD_GRAD(bf16, uint16_t, bf16_load, bf16_store)

#pragma GCC push_options
#pragma GCC target("prefer-vector-width=512")  /* Element-wise, as bias_act's. */
DEFINE_DEMOD_FORWARD(f32, float, f32_load, f32_store, F32_TMP, F32_FLUSH)
DEFINE_DEMOD_FORWARD(bf16, uint16_t, bf16_load, bf16_store, BF16_TMP, BF16_FLUSH)

int demod_bias_act_cpu_forward(int dtype, void *out, const void *x, const void *d, const void *noise, const void *b,
                               long N, long C, long HW, int channels_last, int act, float alpha, float gain,
                               float clamp, int num_threads) {
    params_t p = { act, alpha, gain, clamp };
    PER_SAMPLE_LOOP(dtype, N * C * HW, num_threads)
    for (long n = 0; n < N; n++) {
        long o = n * C * HW * size, on = n * HW * size, od = n * C * size;
        if (dtype == 0)
            f32_demod_forward_sample(AT(float *, out, o), AT(const float *, x, o), AT(const float *, d, od),
                                     noise ? AT(const float *, noise, on) : NULL, (const float *)b, C, HW, channels_last, p);
        else
            bf16_demod_forward_sample(AT(uint16_t *, out, o), AT(const uint16_t *, x, o), AT(const uint16_t *, d, od),
                                      noise ? AT(const uint16_t *, noise, on) : NULL, (const uint16_t *)b, C, HW, channels_last, p);
    }
    return 0;
}
#pragma GCC pop_options

int demod_bias_act_cpu_grad(int dtype, void *dx, float *dd, float *dnoise, float *db, float *db_rows, const void *dy,
                            const void *y, const void *x, const void *d, long N, long C, long HW, int channels_last,
                            int act, float alpha, float gain, float clamp, int num_threads) {
    params_t p = { act, alpha, gain, clamp };
    PER_SAMPLE_LOOP(dtype, N * C * HW, num_threads)
    for (long n = 0; n < N; n++) {
        long o = n * C * HW * size, od = n * C * size;
        if (dtype == 0)
            f32_demod_grad_sample(AT(float *, dx, o), dd + n * C, dnoise + n * HW, db_rows + n * C, AT(const float *, dy, o),
                                  AT(const float *, y, o), AT(const float *, x, o), AT(const float *, d, od), C, HW, channels_last, p);
        else
            bf16_demod_grad_sample(AT(uint16_t *, dx, o), dd + n * C, dnoise + n * HW, db_rows + n * C, AT(const uint16_t *, dy, o),
                                   AT(const uint16_t *, y, o), AT(const uint16_t *, x, o), AT(const uint16_t *, d, od), C, HW, channels_last, p);
    }
    for (long c = 0; c < C; c++) {
        float s = 0.0f;
        for (long n = 0; n < N; n++)
            s += db_rows[n * C + c];
        db[c] = s;
    }
    return 0;
}

/*----------------------------------------------------------------------------
 * The derivative of y = x * s[n, c] (StyleGAN2's modulation of a convolution's input) in one pass:
 * dx = dy * s and ds[n, c] = sum_hw dy * x (float32, as demod's sums). x, dy [N, C, H, W] contiguous or
 * channels_last (both alike), s [N, C], all of one dtype. */

#define DEFINE_SCALE(NAME, T, LOAD, STORE)                                                             \
static void NAME##_scale_grad_sample(T *dx, float *ds, const T *dy, const T *x, const T *s, long C,     \
                                     long HW, int channels_last) {                                     \
    if (channels_last) {                                                                               \
        for (long c = 0; c < C; c++)                                                                   \
            ds[c] = 0.0f;                                                                              \
        for (long hw = 0; hw < HW; hw++) {                                                             \
            long o = hw * C;                                                                           \
            for (long c = 0; c < C; c++) {                                                             \
                float g = LOAD(dy[o + c]);                                                             \
                dx[o + c] = STORE(g * LOAD(s[c]));                                                     \
                ds[c] += g * LOAD(x[o + c]);                                                           \
            }                                                                                          \
        }                                                                                              \
    } else {                                                                                           \
        for (long c = 0; c < C; c++) {                                                                 \
            long o = c * HW;                                                                           \
            float sc = LOAD(s[c]), acc = 0.0f;                                                         \
            _Pragma("omp simd reduction(+:acc)")                                                       \
            for (long hw = 0; hw < HW; hw++) {                                                         \
                float g = LOAD(dy[o + hw]);                                                            \
                dx[o + hw] = STORE(g * sc);                                                            \
                acc += g * LOAD(x[o + hw]);                                                            \
            }                                                                                          \
            ds[c] = acc;                                                                               \
        }                                                                                              \
    }                                                                                                  \
}

DEFINE_SCALE(f32, float, f32_load, f32_store)
DEFINE_SCALE(bf16, uint16_t, bf16_load, bf16_store)

int scale_channels_cpu_grad(int dtype, void *dx, float *ds, const void *dy, const void *x, const void *s, long N,
                            long C, long HW, int channels_last, int num_threads) {
    PER_SAMPLE_LOOP(dtype, N * C * HW, num_threads)
    for (long n = 0; n < N; n++) {
        long o = n * C * HW * size, os = n * C * size;
        if (dtype == 0)
            f32_scale_grad_sample(AT(float *, dx, o), ds + n * C, AT(const float *, dy, o), AT(const float *, x, o),
                                  AT(const float *, s, os), C, HW, channels_last);
        else
            bf16_scale_grad_sample(AT(uint16_t *, dx, o), ds + n * C, AT(const uint16_t *, dy, o), AT(const uint16_t *, x, o),
                                   AT(const uint16_t *, s, os), C, HW, channels_last);
    }
    return 0;
}

/*----------------------------------------------------------------------------
 * Depthwise transposed convolution, channels_last: out[n, o, c] = sum over input pixels i and taps k
 * with o = i * stride - padding + k (per axis) of x[n, i, c] * w[c, k], each output pixel written once
 * (accumulated in float32, rounded once). x [N, H, W, C] in memory, w as [kh, kw, C] float32 (the
 * caller transposes the [C, 1, kh, kw] weight), out [N, OH, OW, C]. conv2d_gradfix uses it for the
 * strided ones in reduced precision (up-sampling filters, input gradients of strided depthwise
 * convolutions), where torch's kernel is slow. */

#define DEFINE_DWT(NAME, T, LOAD, STORE)                                                               \
static inline __attribute__((always_inline)) void NAME##_dwt_row(T *restrict out, const T *restrict x, const float *restrict w, \
                           float *restrict acc, long oy, long H, long W, long C, long kh, long kw,     \
                           long sy, long sx, long py, long px, long OW) {                              \
    for (long i = 0; i < OW * C; i++)                                                                  \
        acc[i] = 0.0f;                                                                                 \
    for (long ky = (oy + py) % sy; ky < kh; ky += sy) {                                                \
        long iy = (oy + py - ky) / sy;                                                                 \
        if (iy >= H)                                                                                   \
            continue;                                                                                  \
        if (iy < 0)                                                                                    \
            break;                                                                                     \
        for (long kx = 0; kx < kw; kx++) {                                                             \
            /* Input columns ix whose output column ix * sx + kx - px lies in [0, OW). */              \
            long ix_lo = (px - kx > 0) ? (px - kx + sx - 1) / sx : 0;                                  \
            long last = OW - 1 + px - kx;                                                              \
            long ix_hi = (last < 0) ? -1 : ((last / sx < W - 1) ? last / sx : W - 1);                  \
            const float *restrict wp = w + (ky * kw + kx) * C;                                         \
            for (long ix = ix_lo; ix <= ix_hi; ix++) {                                                 \
                float *restrict a = acc + (ix * sx + kx - px) * C;                                     \
                const T *restrict xp = x + (iy * W + ix) * C;                                          \
                for (long c = 0; c < C; c++)                                                           \
                    a[c] += LOAD(xp[c]) * wp[c];                                                       \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
    for (long i = 0; i < OW * C; i++)                                                                  \
        out[i] = STORE(acc[i]);                                                                        \
}

DEFINE_DWT(f32, float, f32_load, f32_store)
DEFINE_DWT(bf16, uint16_t, bf16_load, bf16_store)

/* The same with 32 channels known at compile time (the demo's width), where the loops over C are too
 * short for the general code's setup: the same operations in the same order. */
static void bf16_dwt_row_c32(uint16_t *out, const uint16_t *x, const float *w, float *acc, long oy, long H, long W,
                             long kh, long kw, long sy, long sx, long py, long px, long OW) {
    bf16_dwt_row(out, x, w, acc, oy, H, W, 32, kh, kw, sy, sx, py, px, OW);
}

int depthwise_transpose_cpu(int dtype, void *out, const void *x, const float *w, long N, long C, long H, long W,
                            long kh, long kw, long sy, long sx, long py, long px, long OH, long OW, int num_threads) {
    int threads __attribute__((unused)) = team_size(N * C * OH * OW, num_threads);
    long size = elem_size(dtype);
    long stride = (OW * C + 31) / 16 * 16;  /* Per-thread row sums, apart by at least one cache line. */
    float *acc_all = (float *)malloc(sizeof(float) * (size_t)(stride * threads));
    if (acc_all == NULL)
        return 1;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long row = 0; row < N * OH; row++) {
#ifdef _OPENMP
        float *acc = acc_all + (long)omp_get_thread_num() * stride;
#else
        float *acc = acc_all;
#endif
        long n = row / OH, oy = row % OH, o = row * OW * C * size, ox = n * H * W * C * size;
        if (dtype == 0)
            f32_dwt_row(AT(float *, out, o), AT(const float *, x, ox), w, acc, oy, H, W, C, kh, kw, sy, sx, py, px, OW);
        else if (C == 32)
            bf16_dwt_row_c32(AT(uint16_t *, out, o), AT(const uint16_t *, x, ox), w, acc, oy, H, W, kh, kw, sy, sx, py, px, OW);
        else
            bf16_dwt_row(AT(uint16_t *, out, o), AT(const uint16_t *, x, ox), w, acc, oy, H, W, C, kh, kw, sy, sx, py, px, OW);
    }
    free(acc_all);
    return 0;
}

/* The forward of scale_channels: out = x * s[n, c], the same values as torch's product (one rounding). */
#define DEFINE_SCALE_FORWARD(NAME, T, LOAD, STORE, TMP, FLUSH)                                         \
static void NAME##_scale_forward_sample(T *out, const T *x, const T *s, long C, long HW, int channels_last) {\
    if (channels_last) {                                                                               \
        float sv[DEMOD_MAX_C], buf[DEMOD_MAX_C] __attribute__((unused));                               \
        for (long c0 = 0; c0 < C; c0 += DEMOD_MAX_C) {                                                 \
            long width = (C - c0 < DEMOD_MAX_C) ? C - c0 : DEMOD_MAX_C;                                \
            for (long c = 0; c < width; c++)                                                           \
                sv[c] = LOAD(s[c0 + c]);                                                               \
            for (long hw = 0; hw < HW; hw++) {                                                         \
                float *t = TMP(out + hw * C + c0, buf);                                                \
                for (long c = 0; c < width; c++)                                                       \
                    t[c] = LOAD(x[hw * C + c0 + c]) * sv[c];                                           \
                FLUSH(out + hw * C + c0, buf, width);                                                  \
            }                                                                                          \
        }                                                                                              \
    } else {                                                                                           \
        for (long c = 0; c < C; c++) {                                                                 \
            float sc = LOAD(s[c]);                                                                     \
            for (long hw = 0; hw < HW; hw++)                                                           \
                out[c * HW + hw] = STORE(LOAD(x[c * HW + hw]) * sc);                                   \
        }                                                                                              \
    }                                                                                                  \
}

#pragma GCC push_options
#pragma GCC target("prefer-vector-width=512")  /* Element-wise, as bias_act's. */
DEFINE_SCALE_FORWARD(f32, float, f32_load, f32_store, F32_TMP, F32_FLUSH)
DEFINE_SCALE_FORWARD(bf16, uint16_t, bf16_load, bf16_store, BF16_TMP, BF16_FLUSH)

int scale_channels_cpu_forward(int dtype, void *out, const void *x, const void *s, long N, long C, long HW,
                               int channels_last, int num_threads) {
    PER_SAMPLE_LOOP(dtype, N * C * HW, num_threads)
    for (long n = 0; n < N; n++) {
        long o = n * C * HW * size, os = n * C * size;
        if (dtype == 0)
            f32_scale_forward_sample(AT(float *, out, o), AT(const float *, x, o), AT(const float *, s, os), C, HW, channels_last);
        else
            bf16_scale_forward_sample(AT(uint16_t *, out, o), AT(const uint16_t *, x, o), AT(const uint16_t *, s, os), C, HW, channels_last);
    }
    return 0;
}
#pragma GCC pop_options

/* Weights of a reduced-precision convolution (weight_cast.py): a float32 [O, I, KH, KW] weight w, dense in
 * the contiguous or (channels_last = 1) the channels_last layout; out and grad have w's layout.
 * Forward: out = bf16(w * gain) (gain 1: the plain cast) and, where sums is not NULL, sums[o, i] (contiguous)
 * = the sum of the squares of filter (o, i)'s taps, added in the order torch's sum over the last two dims
 * takes on this layout: contiguous, 8 interleaved partial sums and then those in order; channels_last, tap
 * after tap (torch's order when I is a multiple of its vector width; the tests check it against torch).
 * Backward: grad = g * gain (g bfloat16 [O, I, KH, KW] with element strides g0-g3; NULL: no such term)
 * + w * (2 * gsums[o, i]) (gsums NULL: no such term). */
static inline float squared_row_sum(const float *w, long taps) {
    float lane[8] = { 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f };
    for (long t = 0; t < taps; t++)
        lane[t % 8] = lane[t % 8] + w[t] * w[t];
    float sum = lane[0];
    for (int i = 1; i < 8; i++)
        sum = sum + lane[i];
    return sum;
}

int weight_cast_cpu_forward(uint16_t *out, float *sums, const float *w, long O, long I, long taps, float gain,
                            int channels_last, int num_threads) {
    int threads __attribute__((unused)) = team_size(O * I * taps, num_threads);
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long o = 0; o < O; o++) {
        const float *wo = w + o * I * taps;
        for (long j = 0; j < I * taps; j++)
            out[o * I * taps + j] = bf16_store(wo[j] * gain);
        if (sums == NULL)
            continue;
        float *so = sums + o * I;
        if (!channels_last) {
            for (long i = 0; i < I; i++)
                so[i] = squared_row_sum(wo + i * taps, taps);
        } else {
            for (long i = 0; i < I; i++)
                so[i] = 0.0f;
            for (long t = 0; t < taps; t++)
                for (long i = 0; i < I; i++)
                    so[i] = so[i] + wo[t * I + i] * wo[t * I + i];
        }
    }
    return 0;
}

/* One element of the backward: w[k] and grad[k] at w's offset k of filter (o, i)'s tap t. */
static inline float weight_grad_value(const uint16_t *g, long g_offset, float gain, float w, float sum2,
                                      int has_sums) {
    if (g != NULL && has_sums)
        return bf16_load(g[g_offset]) * gain + w * sum2;
    if (g != NULL)
        return bf16_load(g[g_offset]) * gain;
    return w * sum2;
}

int weight_cast_cpu_grad(float *grad, const uint16_t *g, long g0, long g1, long g2, long g3, const float *w,
                         const float *gsums, long O, long I, long KH, long KW, float gain, int channels_last,
                         int num_threads) {
    long taps = KH * KW;
    int threads __attribute__((unused)) = team_size(O * I * taps, num_threads);
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long o = 0; o < O; o++) {
        for (long t = 0; t < taps; t++) {
            long g_tap = o * g0 + (t / KW) * g2 + (t % KW) * g3;
            for (long i = 0; i < I; i++) {
                long k = channels_last ? (o * taps + t) * I + i : (o * I + i) * taps + t;
                float sum2 = (gsums != NULL) ? gsums[o * I + i] * 2.0f : 0.0f;
                grad[k] = weight_grad_value(g, g_tap + i * g1, gain, w[k], sum2, gsums != NULL);
            }
        }
    }
    return 0;
}
