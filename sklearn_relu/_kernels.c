/* Fused mini-batch gradient of the ReLU loss (the fast path of batch_gradient, dispatched by _parallel.py).
 *
 * One SGD step is memory bound: each sampled row of X is needed twice, once
 * for z = <x, w> + b and once for g += c x. The NumPy path copies the rows into
 * a buffer to hand them to BLAS; here each row is read from memory exactly
 * once, without a copy, and used for both products while it is still in the
 * core's L1/L2 cache.
 *
 * Rows are taken GROUP at a time: their dot products are computed together,
 * in interleaved streams from memory (one row after another is 1.7x slower:
 * a single stream keeps too few requests in flight), and their contributions
 * are added to g in one pass (g is loaded and stored once per group).
 *
 * The function releases the GIL, so the Python side can run two parts of a
 * batch on two threads. Each call writes its own output buffer and the caller
 * adds the parts in a fixed order: the result does not depend on the number
 * of threads or on their timing.
 *
 * Semantics (identical to batch_gradient_reference in _gradient.py):
 *   z_i = <x_i, w> + b,  r_i = max(z_i, 0) - y_i,
 *   relu'(z) = 1 (z > 0), 1/2 (z == 0), 0 (z < 0),
 *   c_i = s_i r_i relu'(z_i) scale,   out = sum_i c_i x_i,
 * returning (sum_i c_i, sum_i s_i r_i^2 / 2, sum_i s_i). A NaN z gives a NaN
 * c_i (so the caller sees a non-finite gradient), as NumPy's maximum does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* Rows handled together: GROUP interleaved streams from memory. Measured on
 * the 2-core Xeon this was tuned on: 8 is 10% faster than 4 for float32 rows
 * (16 KB at d = 4000), the same for float64; two groups of 8 rows of 32 KB
 * still fit in a core's L2. */
#define GROUP 8

/* Each row's stream asks for the line this far ahead of the one it reads.
 * A sampled row is a fresh stream from memory, and the hardware prefetcher
 * stops at every 4 KiB page; asking ahead keeps lines in flight across them.
 * Measured on the 2-core AMD EPYC (one thread, 500 random rows of 4000,
 * variants interleaved in one process): 0.77-0.85x the time without it,
 * float64 and float32 alike; 256 bytes 0.84-0.86x, 1024 0.85x, 2048 0.91x.
 * Rows shorter than a page gain nothing and pay the instructions (1.14x at
 * d = 100), so only rows of PREFETCH_MIN_ROW bytes or more ask ahead (d =
 * 1000 float64: 0.85x). The arithmetic is unchanged: the same bits. */
#define PREFETCH_BYTES 512
#define PREFETCH_MIN_ROW 4096
/* In a loop over j: once a cache line, ask for row p's line PREFETCH_BYTES
 * ahead, when the row is long enough (``ahead``, set by the kernel). */
#define PREFETCH_AHEAD(p, j, T)                                                \
    do {                                                                       \
        if (ahead && (j) % (64 / sizeof(T)) == 0)                              \
            __builtin_prefetch((p) + (j) + PREFETCH_BYTES / sizeof(T), 0, 0);  \
    } while (0)

/* Runtime-dispatched AVX2+FMA clone where GCC and the loader support it (the
 * wheel must run on any x86-64, so no -march=native); elsewhere one plain
 * build. The 32-byte GCC vector types below become 2 SSE registers on the
 * default clone and one AVX register on the other. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define DISPATCH __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DISPATCH
#endif

/* The kernel, written once for float and double by DEFINE_KERNEL below. The
 * loops over k < GROUP are unrolled (GCC unroll pragma), so acc[] and cv[]
 * live in registers.
 *
 * GCC vector types of 32 bytes: one AVX register in the AVX2 clone, two SSE
 * registers in the default one. Loads and stores go through memcpy because a
 * row of X starts at any multiple of the item size; it compiles to one
 * unaligned move. Sums that leave the kernel are carried in double.
 *
 * Software pipelining: the loop over j that reads group i's rows from memory
 * (the dot products) also adds group i-1's contributions to g, reading those
 * rows again from L1/L2. The memory stream is the bottleneck; the cache work
 * rides along with it (measured on one core: 1.23x -> 1.09x the time of a
 * contiguous matrix-vector product over as many rows).
 */
#define DEFINE_KERNEL(NAME, T, VT, LANES)                                      \
typedef T VT __attribute__((vector_size(32)));                                 \
                                                                               \
static inline __attribute__((always_inline)) VT                                \
NAME##_load(const T *p) { VT v; memcpy(&v, p, sizeof v); return v; }           \
                                                                               \
static inline __attribute__((always_inline)) void                              \
NAME##_store(T *p, VT v) { memcpy(p, &v, sizeof v); }                          \
                                                                               \
/* dots[k] = <x[k], w>, and g += sum_k c[k] xp[k] when update is set. */       \
static inline __attribute__((always_inline)) void                              \
NAME##_pass(const T *const x[GROUP], const T *w, Py_ssize_t d, double dots[GROUP], \
            int update, const T *const xp[GROUP], const T c[GROUP], T *g)      \
{                                                                              \
    VT acc[GROUP], cv[GROUP];                                                  \
    const int ahead = (size_t)d * sizeof(T) >= PREFETCH_MIN_ROW;              \
    _Pragma("GCC unroll 16")                                                   \
    for (int k = 0; k < GROUP; k++) { acc[k] = (VT){0}; cv[k] = (VT){0} + c[k]; } \
    Py_ssize_t j = 0;                                                          \
    if (update) {                                                              \
        for (; j + LANES <= d; j += LANES) {                                   \
            VT wj = NAME##_load(w + j);                                        \
            VT gj = NAME##_load(g + j);                                        \
            _Pragma("GCC unroll 16")                                           \
            for (int k = 0; k < GROUP; k++) {                                  \
                PREFETCH_AHEAD(x[k], j, T);                                    \
                acc[k] += NAME##_load(x[k] + j) * wj;                          \
                gj += cv[k] * NAME##_load(xp[k] + j);                          \
            }                                                                  \
            NAME##_store(g + j, gj);                                           \
        }                                                                      \
        for (Py_ssize_t i = j; i < d; i++)                                     \
            for (int k = 0; k < GROUP; k++) g[i] += c[k] * xp[k][i];           \
    } else {                                                                   \
        for (; j + LANES <= d; j += LANES) {                                   \
            VT wj = NAME##_load(w + j);                                        \
            _Pragma("GCC unroll 16")                                           \
            for (int k = 0; k < GROUP; k++) {                                  \
                PREFETCH_AHEAD(x[k], j, T);                                    \
                acc[k] += NAME##_load(x[k] + j) * wj;                          \
            }                                                                  \
        }                                                                      \
    }                                                                          \
    for (int k = 0; k < GROUP; k++) {                                          \
        double sum = 0.0;                                                      \
        for (int l = 0; l < LANES; l++) sum += (double)acc[k][l];              \
        for (Py_ssize_t i = j; i < d; i++) sum += (double)x[k][i] * (double)w[i]; \
        dots[k] = sum;                                                         \
    }                                                                          \
}                                                                              \
                                                                               \
DISPATCH static void NAME(                                                     \
    const char *X, Py_ssize_t row_stride, Py_ssize_t d, const T *y,            \
    const T *weight, const T *w, double b, const Py_ssize_t *rows,             \
    Py_ssize_t n_rows, double scale, T *out, double sums[3])                   \
{                                                                              \
    double c_sum = 0.0, loss_sum = 0.0, weight_sum = 0.0;                      \
    const T *x[GROUP] = {0}, *xp[GROUP] = {0}; /* this group's rows, the last */ \
    T c[GROUP] = {0}, cp[GROUP] = {0};                                         \
    int pending = 0;                    /* the previous group is not in g yet */ \
    memset(out, 0, (size_t)d * sizeof(T));                                     \
    for (Py_ssize_t start = 0; start < n_rows + GROUP; start += GROUP) {      \
        int n_group = start >= n_rows ? 0                                      \
            : (n_rows - start < GROUP ? (int)(n_rows - start) : GROUP);        \
        if (n_group == 0) {             /* past the end: only the update */    \
            if (pending)                                                       \
                for (Py_ssize_t j = 0; j < d; j++)                             \
                    for (int k = 0; k < GROUP; k++) out[j] += cp[k] * xp[k][j]; \
            break;                                                             \
        }                                                                      \
        /* A short last group repeats its first row, with c = 0. */           \
        for (int k = 0; k < GROUP; k++)                                        \
            x[k] = (const T *)(X + rows[start + (k < n_group ? k : 0)] * row_stride); \
        double z[GROUP];                                                       \
        NAME##_pass(x, w, d, z, pending, xp, cp, out);                         \
        int active = 0;                                                        \
        for (int k = 0; k < GROUP; k++) {                                      \
            c[k] = 0;                                                          \
            if (k >= n_group) continue;                                        \
            Py_ssize_t row = rows[start + k];                                  \
            double zk = z[k] + b;                                              \
            double s = weight ? (double)weight[row] : 1.0;                     \
            /* zk != zk: a NaN must reach the caller, as in NumPy. */         \
            double r = (zk > 0.0 ? zk : (zk != zk ? zk : 0.0)) - (double)y[row]; \
            double slope = zk > 0.0 ? 1.0 : (zk == 0.0 ? 0.5 : (zk != zk ? zk : 0.0)); \
            double ci = s * r * slope * scale;                                 \
            c[k] = (T)ci;                                                      \
            active |= ci != 0.0;        /* rows with z < 0 add nothing */      \
            c_sum += ci;                                                       \
            loss_sum += s * r * r;                                             \
            weight_sum += s;                                                   \
        }                                                                      \
        pending = active;                                                      \
        for (int k = 0; k < GROUP; k++) { xp[k] = x[k]; cp[k] = c[k]; }        \
    }                                                                          \
    sums[0] = c_sum;                                                           \
    sums[1] = 0.5 * loss_sum;                                                  \
    sums[2] = weight_sum;                                                      \
}



DEFINE_KERNEL(gradient_f64, double, vdouble, 4)
DEFINE_KERNEL(gradient_f32, float, vfloat, 8)

/* -- Many SGD steps in one call ------------------------------------------------
 *
 * The in-process fast path of _steps.py. For a small batch (d = 100, 200 rows)
 * the arithmetic of a step takes about 10 us, and the Python around it (drawing
 * the batch, sorting it, calling the kernel, compressing, decoding, checking,
 * updating) took ten times that. sgd_steps runs n_steps whole steps here, with
 * the same operations in the same order as the per-step Python path, so that
 * the model is the same to the last bit:
 *
 * - the batch is drawn as numpy.random.Generator.integers(0, n, m) draws it
 *   (Lemire's bounded 32-bit method on the generator's own bit generator), and
 *   QSGD's uniforms as Generator.random(d) does (next_double), from the very
 *   generator the worker owns, which the Python path then continues from;
 * - the gradient is the kernel above, on the same two parts added in order;
 * - QSGD quantizes as QSGD._quantize does (bucket norms with NumPy's pairwise
 *   summation, rounded up to float32, levels drawn against uniforms) and the
 *   message decodes as QSGD.decompress would decode it;
 * - the workers' vectors are summed in worker order in the model's dtype, and
 *   the step params - lr * direction is taken in that dtype.
 *
 * No fused multiply-add may merge lr * g into the subtraction (NumPy rounds
 * the product first): this section is compiled without contraction.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <float.h>
#include <time.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* NumPy's public bitgen_t (numpy/random/bitgen.h), whose layout is part of
 * NumPy's C API: a BitGenerator's .capsule holds a pointer to one. */
typedef struct {
    void *state;
    uint64_t (*next_uint64)(void *st);
    uint32_t (*next_uint32)(void *st);
    double (*next_double)(void *st);
    uint64_t (*next_raw)(void *st);
} relu_bitgen_t;

/* Generator.integers(0, rng + 1) for rng < 2**32 - 1: NumPy's
 * buffered_bounded_lemire_uint32 (rng = 0 draws nothing). */
static inline uint32_t
bounded_uint32(relu_bitgen_t *gen, uint32_t rng)
{
    if (rng == 0)
        return 0;
    const uint32_t rng_excl = rng + 1;
    uint64_t m = (uint64_t)gen->next_uint32(gen->state) * rng_excl;
    uint32_t leftover = (uint32_t)(m & 0xFFFFFFFFUL);
    if (leftover < rng_excl) {
        const uint32_t threshold = (UINT32_MAX - rng) % rng_excl;
        while (leftover < threshold) {
            m = (uint64_t)gen->next_uint32(gen->state) * rng_excl;
            leftover = (uint32_t)(m & 0xFFFFFFFFUL);
        }
    }
    return (uint32_t)(m >> 32);
}

/* Sort a batch of row indices (any correct sort gives the same array). */
static void
sort_rows(Py_ssize_t *a, Py_ssize_t n)
{
    while (n > 16) {
        Py_ssize_t mid = n / 2, last = n - 1, t;
        /* median of three to a[mid] */
        if (a[mid] < a[0]) { t = a[mid]; a[mid] = a[0]; a[0] = t; }
        if (a[last] < a[0]) { t = a[last]; a[last] = a[0]; a[0] = t; }
        if (a[last] < a[mid]) { t = a[last]; a[last] = a[mid]; a[mid] = t; }
        Py_ssize_t pivot = a[mid], i = 0, j = last;
        for (;;) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i >= j) break;
            t = a[i]; a[i] = a[j]; a[j] = t;
            i++; j--;
        }
        /* recurse on the smaller side, loop on the larger */
        if (j + 1 < n - j - 1) { sort_rows(a, j + 1); a += j + 1; n -= j + 1; }
        else { sort_rows(a + j + 1, n - j - 1); n = j + 1; }
    }
    for (Py_ssize_t i = 1; i < n; i++) {
        Py_ssize_t v = a[i], k = i;
        for (; k > 0 && a[k - 1] > v; k--) a[k] = a[k - 1];
        a[k] = v;
    }
}

/* NumPy's pairwise summation (loops_utils.h.src), as add.reduce runs it on a
 * contiguous float64 segment. */
static double
pairwise_sum(const double *a, Py_ssize_t n)
{
    if (n < 8) {
        double res = 0.0;
        for (Py_ssize_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8], res;
        Py_ssize_t i;
        for (int k = 0; k < 8; k++) r[k] = a[k];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int k = 0; k < 8; k++) r[k] += a[i + k];
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    Py_ssize_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

/* np.add.reduceat over one segment: its first item, then the rest added. */
static double
segment_sum(const double *a, Py_ssize_t n)
{
    return a[0] + pairwise_sum(a + 1, n - 1);
}

/* _bucket_norms: each bucket divided by its peak, squared, summed, rooted. */
static void
bucket_norms(const double *magnitude, Py_ssize_t p, Py_ssize_t bucket,
             double *squares, double *norms)
{
    Py_ssize_t k = 0;
    for (Py_ssize_t start = 0; start < p; start += bucket, k++) {
        Py_ssize_t stop = start + bucket < p ? start + bucket : p;
        double peak = magnitude[start];
        for (Py_ssize_t i = start + 1; i < stop; i++)
            if (magnitude[i] > peak) peak = magnitude[i];
        double divisor = peak > 0 ? peak : 1.0;
        for (Py_ssize_t i = start; i < stop; i++) {
            double v = magnitude[i] / divisor;
            squares[i] = v * v;
        }
        norms[k] = peak * sqrt(segment_sum(squares + start, stop - start));
    }
}

static double
seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A second thread for the large batches of a run of steps. The per-step path
 * hands the second half of a batch to a pooled Python thread, which sleeps
 * between steps; waking it costs about what it saves (inside a fit a step at
 * d = 4000, m = 1000 took 1.8x a contiguous matrix-vector product over as
 * many rows, back to back 1.2x). Here one helper thread per process, started
 * on first use and kept (a thread started per call ran on the caller's core
 * for the first steps), waits between steps by spinning, then yielding, then
 * sleeping on a condition variable, so that it neither sleeps through the
 * steps of a fit nor takes a core from other processes for long; between
 * runs of steps it sleeps. It computes
 * the same half into its own buffer: the same bits. One run of steps uses it
 * at a time; a concurrent run (another Python thread) computes both halves
 * itself. */
#if !defined(_WIN32)
#include <pthread.h>
#include <sched.h>
#define HAVE_STEP_HELPER 1
#else
#define HAVE_STEP_HELPER 0
#endif

enum { HELPER_IDLE, HELPER_WORK, HELPER_DONE };

typedef struct {
    int phase;                      /* HELPER_*, accessed atomically */
    int parked;                     /* no run of steps holds the helper */
    double parked_at;               /* since when (seconds_now) */
    int is_f32;
    const char *X;
    Py_ssize_t row_stride, d, n_rows;
    const void *y, *weight, *coef;
    double b, scale;
    const Py_ssize_t *rows;
    void *out;
    double sums[3];
} step_helper;

/* Spinning: a few thousand pauses (about 100 us), then yields; past
 * YIELD_LIMIT the helper sleeps until work arrives. */
#define PAUSE_LIMIT 100
#define YIELD_LIMIT 20000
#define PARK_GRACE 2e-3

static inline void
wait_a_little(long *spins)
{
    ++*spins;
    if (*spins < PAUSE_LIMIT) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
#if HAVE_STEP_HELPER
    else {
        sched_yield();
    }
#endif
}

static void
helper_run(step_helper *h)
{
    if (h->is_f32)
        gradient_f32(h->X, h->row_stride, h->d, h->y, h->weight, h->coef, h->b,
                     h->rows, h->n_rows, h->scale, h->out, h->sums);
    else
        gradient_f64(h->X, h->row_stride, h->d, h->y, h->weight, h->coef, h->b,
                     h->rows, h->n_rows, h->scale, h->out, h->sums);
}

#if HAVE_STEP_HELPER
static step_helper the_helper;
static int helper_started = 0;      /* under helper_owner */
static pthread_mutex_t helper_owner = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t helper_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t helper_wake = PTHREAD_COND_INITIALIZER;

static void *
helper_main(void *arg)
{
    step_helper *h = arg;
    long spins = 0;
    for (;;) {
        if (__atomic_load_n(&h->phase, __ATOMIC_ACQUIRE) == HELPER_WORK) {
            helper_run(h);
            __atomic_store_n(&h->phase, HELPER_DONE, __ATOMIC_RELEASE);
            spins = 0;
        } else if (spins < YIELD_LIMIT
                   && !(__atomic_load_n(&h->parked, __ATOMIC_ACQUIRE)
                        && seconds_now() - h->parked_at > PARK_GRACE)) {
            wait_a_little(&spins);
        } else {
            pthread_mutex_lock(&helper_lock);
            while (__atomic_load_n(&h->phase, __ATOMIC_ACQUIRE) != HELPER_WORK)
                pthread_cond_wait(&helper_wake, &helper_lock);
            pthread_mutex_unlock(&helper_lock);
            spins = 0;
        }
    }
    return NULL;
}

/* A forked child has no helper thread, whatever the parent had. */
static void
helper_after_fork(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t fresh_cond = PTHREAD_COND_INITIALIZER;
    helper_owner = fresh;
    helper_lock = fresh;
    helper_wake = fresh_cond;
    helper_started = 0;
    memset(&the_helper, 0, sizeof the_helper);
}

/* The process's helper for this run of steps, or NULL (another run holds
 * it, or no thread could be started). Release with helper_release. */
static step_helper *
helper_acquire(void)
{
    if (pthread_mutex_trylock(&helper_owner) != 0)
        return NULL;
    if (!helper_started) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&thread, &attr, helper_main, &the_helper) != 0) {
            pthread_attr_destroy(&attr);
            pthread_mutex_unlock(&helper_owner);
            return NULL;
        }
        pthread_attr_destroy(&attr);
        helper_started = 1;
    }
    __atomic_store_n(&the_helper.parked, 0, __ATOMIC_RELEASE);
    return &the_helper;
}

/* The run of steps is over: the helper goes to sleep PARK_GRACE seconds
 * later rather than keep a core busy (a BLAS call right after a fit ran 7x
 * slower while it yielded), but not at once: the next epoch of a fit starts
 * within that time, and a helper woken from sleep ran on its caller's core
 * for the first milliseconds (a float32 step inside a fit took 1.7x its time
 * back to back). */
static void
helper_release(void)
{
    the_helper.parked_at = seconds_now();
    __atomic_store_n(&the_helper.parked, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&helper_owner);
}
#endif

/* Hand the helper one part. */
static void
helper_post(step_helper *h, int is_f32, const char *X, Py_ssize_t row_stride,
            Py_ssize_t d, const void *y, const void *weight, const void *coef,
            double b, const Py_ssize_t *rows, Py_ssize_t n_rows, double scale,
            void *out)
{
    h->is_f32 = is_f32; h->X = X; h->row_stride = row_stride; h->d = d;
    h->y = y; h->weight = weight; h->coef = coef; h->b = b; h->rows = rows;
    h->n_rows = n_rows; h->scale = scale; h->out = out;
#if HAVE_STEP_HELPER
    pthread_mutex_lock(&helper_lock);
    __atomic_store_n(&h->phase, HELPER_WORK, __ATOMIC_RELEASE);
    pthread_cond_signal(&helper_wake);
    pthread_mutex_unlock(&helper_lock);
#endif
}

static void
helper_wait(step_helper *h, double sums[3])
{
    long spins = 0;
    while (__atomic_load_n(&h->phase, __ATOMIC_ACQUIRE) != HELPER_DONE)
        wait_a_little(&spins);
    memcpy(sums, h->sums, sizeof h->sums);
    __atomic_store_n(&h->phase, HELPER_IDLE, __ATOMIC_RELAXED);
}

/* Why a run of steps stopped early; the Python side raises what the
 * per-step path raises at that point. */
enum {
    STEPS_DONE = 0,
    STEPS_GRADIENT_OVERFLOW = 1,    /* a worker's gradient is not finite */
    STEPS_NORM_BEYOND_FLOAT32 = 2,  /* QSGD: a float32 vector's bucket norm */
    STEPS_DECODED_OVERFLOW = 3,     /* QSGD: a message decodes beyond the dtype */
    STEPS_UPDATE_OVERFLOW = 4,      /* the new parameters are not finite */
};

typedef struct {
    const char *X;
    Py_ssize_t row_stride, n_rows, m;
    const void *y, *weight;
    relu_bitgen_t *gen;
    double scale;
    double *batch_loss;             /* [loss_sum, draws], carried on */
    Py_buffer views[4];             /* X, y, weight, batch_loss */
} steps_worker;

typedef struct {
    Py_ssize_t d, p;                /* features; parameters (d or d + 1) */
    int levels;                     /* QSGD's s, or 0: the exact gradient */
    Py_ssize_t bucket;              /* QSGD bucket length (p: one bucket) */
    double learning_rate;
    Py_ssize_t parallel_min_bytes;  /* batches this large use the helper */
    step_helper *helper;            /* or NULL: one thread */
    /* scratch */
    Py_ssize_t *rows;
    double *magnitude, *squares, *norms, *norms32;
} steps_setup;

/* Written once for float and double, as the kernel is. worker_vectors holds
 * n_workers vectors of p; parts two of d. Returns a STEPS_ status and the
 * steps completed; on a stop, params holds the last good parameters. */
#define DEFINE_STEPS(NAME, T, KERNEL, IS_FLOAT32)                              \
static int                                                                     \
NAME(steps_worker *workers, int n_workers, steps_setup *su, T *params,         \
     Py_ssize_t n_steps, T *parts, T *worker_vectors, T *total,                \
     Py_ssize_t *done, double *value, Py_ssize_t *n_scaled, int *which,        \
     double *seconds)                                                          \
{                                                                              \
    const Py_ssize_t d = su->d, p = su->p;                                     \
    const T lr = (T)su->learning_rate;                                         \
    for (Py_ssize_t step = 0; step < n_steps; step++) {                       \
        double t0 = seconds_now();                                             \
        for (int w = 0; w < n_workers; w++) {                                  \
            steps_worker *wk = &workers[w];                                    \
            T *g = worker_vectors + (Py_ssize_t)w * p;                         \
            Py_ssize_t m = wk->m;                                              \
            uint32_t rng = (uint32_t)(wk->n_rows - 1);                         \
            for (Py_ssize_t i = 0; i < m; i++)                                 \
                su->rows[i] = (Py_ssize_t)bounded_uint32(wk->gen, rng);        \
            sort_rows(su->rows, m);                                            \
            double sums[2][3];                                                 \
            Py_ssize_t half = m / 2;                                           \
            double b = p > d ? (double)params[d] : 0.0;                        \
            int split = su->helper != NULL                                     \
                && m * d * (Py_ssize_t)sizeof(T) >= su->parallel_min_bytes;    \
            if (split)                                                         \
                helper_post(su->helper, IS_FLOAT32, wk->X, wk->row_stride, d,  \
                            wk->y, wk->weight, params, b, su->rows + half,     \
                            m - half, wk->scale, parts + d);                   \
            KERNEL(wk->X, wk->row_stride, d, (const T *)wk->y,                 \
                   (const T *)wk->weight, params, b, su->rows, half,           \
                   wk->scale, parts, sums[0]);                                 \
            if (split)                                                         \
                helper_wait(su->helper, sums[1]);                              \
            else                                                               \
                KERNEL(wk->X, wk->row_stride, d, (const T *)wk->y,             \
                       (const T *)wk->weight, params, b, su->rows + half,      \
                       m - half, wk->scale, parts + d, sums[1]);               \
            for (Py_ssize_t j = 0; j < d; j++) g[j] = parts[j] + parts[d + j]; \
            if (p > d) g[d] = (T)(sums[0][0] + sums[1][0]);                    \
            wk->batch_loss[0] += sums[0][1] + sums[1][1];                      \
            wk->batch_loss[1] += (double)m;                                    \
            for (Py_ssize_t j = 0; j < p; j++)                                 \
                if (!isfinite((double)g[j])) {                                 \
                    *done = step; *which = w;                                  \
                    return STEPS_GRADIENT_OVERFLOW;                            \
                }                                                              \
            if (su->levels == 0) continue;                                     \
            /* QSGD: quantize g and replace it by what its message decodes */ \
            double *mag = su->magnitude;                                       \
            double s = (double)su->levels;                                     \
            Py_ssize_t n_buckets = (p + su->bucket - 1) / su->bucket;          \
            for (Py_ssize_t j = 0; j < p; j++) mag[j] = fabs((double)g[j]);    \
            bucket_norms(mag, p, su->bucket, su->squares, su->norms);          \
            double largest = 0.0, smallest = INFINITY;                         \
            for (Py_ssize_t k = 0; k < n_buckets; k++)                         \
                if (su->norms[k] > 0) {                                        \
                    if (su->norms[k] > largest) largest = su->norms[k];        \
                    if (su->norms[k] < smallest) smallest = su->norms[k];      \
                }                                                              \
            int exponent = 0;                                                  \
            if (largest > 0 && !(largest <= FLT_MAX && smallest >= FLT_MIN)) { \
                double peak = 0.0;                                             \
                for (Py_ssize_t j = 0; j < p; j++)                             \
                    if (mag[j] > peak) peak = mag[j];                          \
                frexp(peak, &exponent);                                        \
            }                                                                  \
            if (exponent) {                                                    \
                if (IS_FLOAT32 && largest > FLT_MAX) {                         \
                    *done = step; *which = w; *value = largest;                \
                    return STEPS_NORM_BEYOND_FLOAT32;                          \
                }                                                              \
                for (Py_ssize_t j = 0; j < p; j++)                             \
                    mag[j] = ldexp(mag[j], -exponent);                         \
                bucket_norms(mag, p, su->bucket, su->squares, su->norms);      \
                (*n_scaled)++;                                                 \
            }                                                                  \
            for (Py_ssize_t k = 0; k < n_buckets; k++) {                       \
                float r = (float)su->norms[k];                                 \
                if ((double)r < su->norms[k]) r = nextafterf(r, INFINITY);     \
                su->norms32[k] = (double)r;                                    \
            }                                                                  \
            for (Py_ssize_t j = 0; j < p; j++) {                               \
                double norm = su->norms32[j / su->bucket];                     \
                double scaled = (norm > 0 ? mag[j] / norm : 0.0) * s;          \
                double low = floor(scaled);                                    \
                double u = wk->gen->next_double(wk->gen->state);               \
                double level = low + (double)(u < scaled - low);               \
                if (level > s) level = s;                                      \
                int32_t l = (int32_t)level;                                    \
                if (g[j] < 0) l = -l;                                          \
                /* the decoded coordinate: norm * 2**exponent * (l / s) */    \
                double decoded_norm = exponent ? ldexp(norm, exponent) : norm; \
                g[j] = (T)(decoded_norm * ((double)l / s));                    \
            }                                                                  \
        }                                                                      \
        double t1 = seconds_now();                                             \
        seconds[0] += t1 - t0;                                                 \
        for (int w = 0; w < n_workers; w++) {                                  \
            const T *v = worker_vectors + (Py_ssize_t)w * p;                   \
            if (su->levels)                                                    \
                for (Py_ssize_t j = 0; j < p; j++)                             \
                    if (!isfinite((double)v[j])) {                             \
                        *done = step; *which = w;                              \
                        return STEPS_DECODED_OVERFLOW;                         \
                    }                                                          \
            if (w == 0) memcpy(total, v, (size_t)p * sizeof(T));               \
            else for (Py_ssize_t j = 0; j < p; j++) total[j] += v[j];          \
        }                                                                      \
        double t2 = seconds_now();                                             \
        seconds[1] += t2 - t1;                                                 \
        int finite = 1;                                                        \
        for (Py_ssize_t j = 0; j < p; j++) {                                   \
            T product = lr * total[j];                                         \
            T updated = params[j] - product;                                   \
            finite &= isfinite((double)updated) != 0;                          \
            total[j] = updated;                                                \
        }                                                                      \
        if (!finite) {                                                         \
            *done = step;                                                      \
            return STEPS_UPDATE_OVERFLOW;                                      \
        }                                                                      \
        memcpy(params, total, (size_t)p * sizeof(T));                          \
    }                                                                          \
    *done = n_steps;                                                           \
    return STEPS_DONE;                                                         \
}

DEFINE_STEPS(steps_f64, double, gradient_f64, 0)
DEFINE_STEPS(steps_f32, float, gradient_f32, 1)

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

/* -- Python binding -------------------------------------------------------- */

static int
get_vector(PyObject *obj, Py_buffer *view, const char *name, int writable,
           const char *format, Py_ssize_t itemsize, Py_ssize_t min_length)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->ndim != 1 || view->itemsize != itemsize
        || (format && strcmp(view->format, format) != 0)
        || view->shape[0] < min_length) {
        PyErr_Format(PyExc_ValueError,
                     "%s: expected a contiguous 1-d array of %zd-byte items "
                     "(format %s) with at least %zd items",
                     name, itemsize, format ? format : "any", min_length);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Row indices are NumPy's intp: "l" or "q" (or "n") of pointer size. */
static int
is_integer_format(Py_buffer *view)
{
    const char *f = view->format;
    if (f && (strcmp(f, "l") == 0 || strcmp(f, "q") == 0 || strcmp(f, "n") == 0))
        return 1;
    PyErr_SetString(PyExc_ValueError, "rows: expected an array of dtype intp");
    return 0;
}

PyDoc_STRVAR(gradient_part_doc,
"gradient_part(X, y, sample_weight, coef, intercept, rows, scale, out)\n"
"--\n\n"
"Write sum_i c_i x_i over ``rows`` into ``out``; return\n"
"``(sum_i c_i, loss_sum, weight_sum)``. X is float32 or float64 with unit\n"
"column stride; y, sample_weight (or None), coef and out have its dtype;\n"
"rows are int64 in [0, n_samples), sorted for speed (not checked here).");

static PyObject *
gradient_part(PyObject *self, PyObject *args)
{
    PyObject *X_obj, *y_obj, *weight_obj, *coef_obj, *rows_obj, *out_obj;
    double intercept, scale;
    if (!PyArg_ParseTuple(args, "OOOOdOdO", &X_obj, &y_obj, &weight_obj,
                          &coef_obj, &intercept, &rows_obj, &scale, &out_obj))
        return NULL;

    Py_buffer X = {0}, y = {0}, weight = {0}, coef = {0}, rows = {0}, out = {0};
    PyObject *result = NULL;
    double sums[3];
    if (PyObject_GetBuffer(X_obj, &X, PyBUF_STRIDED_RO | PyBUF_FORMAT) < 0)
        return NULL;
    const char *format = X.format;
    if (X.ndim != 2 || !(strcmp(format, "d") == 0 || strcmp(format, "f") == 0)
        || X.strides[1] != X.itemsize || X.strides[0] % X.itemsize != 0) {
        PyErr_SetString(PyExc_ValueError,
                        "X: expected a 2-d float32 or float64 array with "
                        "contiguous rows");
        goto done;
    }
    Py_ssize_t n = X.shape[0], d = X.shape[1], size = X.itemsize;
    if (get_vector(y_obj, &y, "y", 0, format, size, n) < 0
        || (weight_obj != Py_None
            && get_vector(weight_obj, &weight, "sample_weight", 0, format, size, n) < 0)
        || get_vector(coef_obj, &coef, "coef", 0, format, size, d) < 0
        || get_vector(rows_obj, &rows, "rows", 0, NULL, sizeof(Py_ssize_t), 0) < 0
        || !is_integer_format(&rows)
        || get_vector(out_obj, &out, "out", 1, format, size, d) < 0)
        goto done;

    Py_BEGIN_ALLOW_THREADS
    if (size == 8)
        gradient_f64(X.buf, X.strides[0], d, y.buf, weight.buf, coef.buf,
                     intercept, rows.buf, rows.shape[0], scale, out.buf, sums);
    else
        gradient_f32(X.buf, X.strides[0], d, y.buf, weight.buf, coef.buf,
                     intercept, rows.buf, rows.shape[0], scale, out.buf, sums);
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("ddd", sums[0], sums[1], sums[2]);

done:
    /* Releasing a view that was never filled is a no-op (obj is NULL). */
    PyBuffer_Release(&X);
    PyBuffer_Release(&y);
    PyBuffer_Release(&weight);
    PyBuffer_Release(&coef);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&out);
    return result;
}

/* Defined in the Elias-coding section at the end of this file. */
static int add_elias_functions(PyObject *module);

PyDoc_STRVAR(sgd_steps_doc,
"sgd_steps(workers, params, n_steps, learning_rate, n_features, levels, bucket,\n"
"          n_threads, parallel_min_bytes)\n"
"--\n\n"
"Run ``n_steps`` SGD steps of an in-process fit, updating ``params`` (float32\n"
"or float64, the dtype of every X) in place. ``workers`` is a sequence of\n"
"``(X, y, sample_weight or None, bit_generator_capsule, m, scale, batch_loss)``\n"
"in worker order, ``batch_loss`` a float64 array of 2 that the batch losses\n"
"and draws are added to. ``levels`` is QSGD's s (0: exact gradients),\n"
"``bucket`` its bucket length. A worker's batch of ``parallel_min_bytes`` or\n"
"more is split between two threads when ``n_threads`` > 1. Returns ``(status, steps_done, worker,\n"
"value, n_scaled, compute_seconds, communicate_seconds)``; status 0 when\n"
"all steps ran, else why they stopped (see STEPS_* in the source).");

static void
release_workers(steps_worker *workers, int n)
{
    for (int w = 0; w < n; w++)
        for (int k = 0; k < 4; k++) PyBuffer_Release(&workers[w].views[k]);
}

static PyObject *
sgd_steps(PyObject *self, PyObject *args)
{
    PyObject *workers_obj, *params_obj;
    Py_ssize_t n_steps, n_features, bucket, parallel_min_bytes;
    double learning_rate;
    int levels, n_threads;
    if (!PyArg_ParseTuple(args, "OOndninin", &workers_obj, &params_obj, &n_steps,
                          &learning_rate, &n_features, &levels, &bucket, &n_threads,
                          &parallel_min_bytes))
        return NULL;
    PyObject *seq = PySequence_Fast(workers_obj, "workers: expected a sequence");
    if (seq == NULL)
        return NULL;
    int n_workers = (int)PySequence_Fast_GET_SIZE(seq);
    steps_worker *workers = calloc(n_workers > 0 ? n_workers : 1, sizeof(steps_worker));
    Py_buffer params = {0};
    steps_setup su = {0};
    void *scratch = NULL;
    PyObject *result = NULL;
    if (workers == NULL) { PyErr_NoMemory(); goto done; }
    if (PyObject_GetBuffer(params_obj, &params, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT
                           | PyBUF_WRITABLE) < 0)
        goto done;
    const char *format = params.format;
    Py_ssize_t size = params.itemsize, p = params.ndim == 1 ? params.shape[0] : -1;
    if (!(strcmp(format, "d") == 0 || strcmp(format, "f") == 0)
        || n_workers < 1 || n_features < 1
        || !(p == n_features || p == n_features + 1) || levels < 0
        || bucket < 1 || n_steps < 0) {
        PyErr_SetString(PyExc_ValueError, "sgd_steps: bad arguments");
        goto done;
    }
    Py_ssize_t max_m = 1;
    for (int w = 0; w < n_workers; w++) {
        steps_worker *wk = &workers[w];
        PyObject *X_obj, *y_obj, *weight_obj, *capsule, *loss_obj;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, w), "OOOOndO",
                              &X_obj, &y_obj, &weight_obj, &capsule, &wk->m,
                              &wk->scale, &loss_obj))
            goto done;
        if (PyObject_GetBuffer(X_obj, &wk->views[0], PyBUF_STRIDED_RO | PyBUF_FORMAT) < 0)
            goto done;
        Py_buffer *X = &wk->views[0];
        if (X->ndim != 2 || strcmp(X->format, format) != 0 || X->shape[1] != n_features
            || X->strides[1] != size || X->strides[0] % size != 0
            || X->shape[0] < 1 || X->shape[0] > (Py_ssize_t)UINT32_MAX || wk->m < 1) {
            PyErr_SetString(PyExc_ValueError,
                            "sgd_steps: X must have the dtype of params, n_features "
                            "contiguous columns and 1 to 2**32 - 1 rows");
            goto done;
        }
        Py_ssize_t n = X->shape[0];
        if (get_vector(y_obj, &wk->views[1], "y", 0, format, size, n) < 0
            || (weight_obj != Py_None
                && get_vector(weight_obj, &wk->views[2], "sample_weight", 0, format,
                              size, n) < 0)
            || get_vector(loss_obj, &wk->views[3], "batch_loss", 1, "d", 8, 2) < 0)
            goto done;
        wk->gen = PyCapsule_GetPointer(capsule, "BitGenerator");
        if (wk->gen == NULL)
            goto done;
        wk->X = X->buf;
        wk->row_stride = X->strides[0];
        wk->n_rows = n;
        wk->y = wk->views[1].buf;
        wk->weight = weight_obj == Py_None ? NULL : wk->views[2].buf;
        wk->batch_loss = wk->views[3].buf;
        if (wk->m > max_m) max_m = wk->m;
    }
    su.d = n_features;
    su.p = p;
    su.levels = levels;
    su.bucket = bucket;
    su.learning_rate = learning_rate;
    su.parallel_min_bytes = parallel_min_bytes;
    /* rows, magnitude, squares, norms, norms32, parts, worker vectors, total */
    size_t n_buckets = (size_t)((p + bucket - 1) / bucket);
    size_t bytes = (size_t)max_m * sizeof(Py_ssize_t) + 2 * (size_t)p * sizeof(double)
        + 2 * n_buckets * sizeof(double)
        + ((size_t)(2 + n_workers) * (size_t)p + (size_t)p) * (size_t)size + 64;
    scratch = malloc(bytes);
    if (scratch == NULL) { PyErr_NoMemory(); goto done; }
    char *cursor = scratch;
    su.rows = (Py_ssize_t *)cursor; cursor += (size_t)max_m * sizeof(Py_ssize_t);
    su.magnitude = (double *)cursor; cursor += (size_t)p * sizeof(double);
    su.squares = (double *)cursor; cursor += (size_t)p * sizeof(double);
    su.norms = (double *)cursor; cursor += n_buckets * sizeof(double);
    su.norms32 = (double *)cursor; cursor += n_buckets * sizeof(double);
    void *parts = cursor; cursor += 2 * (size_t)p * (size_t)size;
    void *vectors = cursor; cursor += (size_t)n_workers * (size_t)p * (size_t)size;
    void *total = cursor;

    int large = 0;
    for (int w = 0; w < n_workers; w++)
        large |= workers[w].m * n_features * size >= parallel_min_bytes;
#if HAVE_STEP_HELPER
    if (n_threads > 1 && large && n_steps > 0)
        su.helper = helper_acquire();
#else
    (void)n_threads; (void)large;
#endif
    Py_ssize_t steps_done = 0, n_scaled = 0;
    int which = -1, status;
    double value = 0.0, seconds[2] = {0.0, 0.0};
    Py_BEGIN_ALLOW_THREADS
    if (size == 8)
        status = steps_f64(workers, n_workers, &su, params.buf, n_steps, parts,
                           vectors, total, &steps_done, &value, &n_scaled, &which,
                           seconds);
    else
        status = steps_f32(workers, n_workers, &su, params.buf, n_steps, parts,
                           vectors, total, &steps_done, &value, &n_scaled, &which,
                           seconds);
    Py_END_ALLOW_THREADS
#if HAVE_STEP_HELPER
    if (su.helper != NULL)
        helper_release();
#endif
    result = Py_BuildValue("inidndd", status, steps_done, which, value, n_scaled,
                           seconds[0], seconds[1]);

done:
    if (workers != NULL) {
        release_workers(workers, n_workers);
        free(workers);
    }
    free(scratch);
    PyBuffer_Release(&params);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"gradient_part", gradient_part, METH_VARARGS, gradient_part_doc},
    {"sgd_steps", sgd_steps, METH_VARARGS, sgd_steps_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernels",
    "Fused mini-batch ReLU gradient (optional C extension; dispatched by _parallel.py).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
#if HAVE_STEP_HELPER
    pthread_atfork(NULL, NULL, helper_after_fork);
#endif
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && add_elias_functions(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}


/* ==========================================================================
 * Elias-omega coding of QSGD's sparse levels (compression/_elias.py).
 *
 * A separate section: nothing above depends on it, except the one call in
 * PyInit__kernels that adds these functions to the module.
 *
 * The wire format is QSGD's (Alistarh et al., Section 3.2): for each nonzero
 * level, the omega code of the gap to it, one sign bit (1 for negative), the
 * omega code of |level|; codes concatenated most significant bit first and
 * the last byte padded with ones. The NumPy functions in _elias.py are the
 * reference: these loops give the same bytes, the same levels and, for a
 * malformed message, the same verdict (status, index) as they do. Decoding
 * follows the chain of codes once, bit position by bit position; the NumPy
 * path must decode a code at every bit position first, which is why it is
 * slow and memory hungry when most levels are nonzero (high bit widths).
 * ========================================================================== */
#include <stdint.h>

/* Longest omega group the decoder accepts, as the NumPy reference: a group
 * of at most 33 bits (values below 2**33); a code has at most 7 groups. */
#define ELIAS_MAX_GROUP 33
#define ELIAS_MAX_GROUPS 7

/* -- decoding --------------------------------------------------------------- */

typedef struct {
    const unsigned char *bytes;
    Py_ssize_t n_bytes;
    uint64_t n_bits;
} elias_reader;

static inline int
elias_bit(const elias_reader *r, uint64_t p)
{
    return (r->bytes[p >> 3] >> (7 - (p & 7))) & 1;
}

/* The `width` bits (<= 33) starting at bit p; the caller checked they exist. */
static inline uint64_t
elias_group(const elias_reader *r, uint64_t p, int width)
{
    Py_ssize_t at = (Py_ssize_t)(p >> 3);
    uint64_t word = 0;
    if (at + 8 <= r->n_bytes) {
        for (int k = 0; k < 8; k++) word = (word << 8) | r->bytes[at + k];
    } else {
        for (int k = 0; k < 8; k++)
            word = (word << 8) | (at + k < r->n_bytes ? r->bytes[at + k] : 0);
    }
    return (word << (p & 7)) >> (64 - width);
}

/* Decode one omega code starting at bit p: its value (> 0) and the position
 * after it in *end; 0 if no valid code starts at p. */
static inline uint64_t
elias_read_code(const elias_reader *r, uint64_t p, uint64_t *end)
{
    uint64_t value = 1;
    for (int group = 0; group < ELIAS_MAX_GROUPS; group++) {
        if (p >= r->n_bits)
            return 0;
        if (!elias_bit(r, p)) {
            *end = p + 1;
            return value;
        }
        /* A "1" opens a group of value + 1 bits, the next value. */
        if (value + 1 > ELIAS_MAX_GROUP || p + value + 1 > r->n_bits)
            return 0;
        int width = (int)value + 1;
        value = elias_group(r, p, width);
        p += (uint64_t)width;
    }
    return 0;
}

/* Status codes returned to Python, which words the error. */
enum {
    ELIAS_OK = 0,
    ELIAS_BAD_GAP = 1,      /* index: the nonzero */
    ELIAS_BAD_LEVEL = 2,    /* index: the nonzero */
    ELIAS_BAD_PADDING = 3,  /* index: bits after the last code */
    ELIAS_OUTSIDE = 4,      /* index: the last nonzero's position */
};

static int
elias_decode(const elias_reader *r, Py_ssize_t n_nonzero, int64_t *levels,
             Py_ssize_t n_values, int64_t *index)
{
    uint64_t position = 0, where = (uint64_t)-1, end = 0;
    for (Py_ssize_t k = 0; k < n_nonzero; k++) {
        uint64_t gap = elias_read_code(r, position, &end);
        if (gap == 0) {
            *index = k;
            return ELIAS_BAD_GAP;
        }
        uint64_t sign_at = end;
        uint64_t magnitude = sign_at + 1 >= r->n_bits
            ? 0 : elias_read_code(r, sign_at + 1, &end);
        if (magnitude == 0) {
            *index = k;
            return ELIAS_BAD_LEVEL;
        }
        position = end;
        where += gap;
        /* Positions only grow: if the last is inside, all are (checked after
         * the padding, as the reference does). */
        if (where < (uint64_t)n_values)
            levels[where] = elias_bit(r, sign_at) ? -(int64_t)magnitude
                                                  : (int64_t)magnitude;
    }
    uint64_t tail = r->n_bits - position;
    int ones = tail < 8;
    for (uint64_t p = position; ones && p < r->n_bits; p++)
        ones = elias_bit(r, p);
    if (!ones) {
        *index = (int64_t)tail;
        return ELIAS_BAD_PADDING;
    }
    if (n_nonzero > 0 && where >= (uint64_t)n_values) {
        *index = (int64_t)where;
        return ELIAS_OUTSIDE;
    }
    return ELIAS_OK;
}

PyDoc_STRVAR(elias_decode_sparse_doc,
"elias_decode_sparse(packed, n_nonzero, out)\n"
"--\n\n"
"Decode ``n_nonzero`` (gap, sign, level) triples from ``packed`` into ``out``,\n"
"an int64 array of zeros, one item per value. Return ``(status, index)``:\n"
"status 0 for a valid message, 1 (2) for a malformed gap (level) of nonzero\n"
"``index``, 3 for a tail of ``index`` bits that is not padding, 4 for a last\n"
"nonzero at position ``index`` outside ``out``.");

static PyObject *
elias_decode_sparse(PyObject *self, PyObject *args)
{
    PyObject *packed_obj, *out_obj;
    Py_ssize_t n_nonzero;
    if (!PyArg_ParseTuple(args, "OnO", &packed_obj, &n_nonzero, &out_obj))
        return NULL;
    Py_buffer packed = {0}, out = {0};
    PyObject *result = NULL;
    if (PyObject_GetBuffer(packed_obj, &packed, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (get_vector(out_obj, &out, "out", 1, NULL, 8, 0) < 0)
        goto done;
    if (!is_integer_format(&out) || n_nonzero < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "n_nonzero must be >= 0");
        goto done;
    }
    elias_reader reader = {packed.buf, packed.len, 8 * (uint64_t)packed.len};
    int64_t index = 0;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = elias_decode(&reader, n_nonzero, out.buf, out.shape[0], &index);
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("iL", status, (long long)index);
done:
    PyBuffer_Release(&packed);
    PyBuffer_Release(&out);
    return result;
}

/* -- encoding --------------------------------------------------------------- */

static inline int
elias_bit_length(uint64_t v)
{
    return 64 - __builtin_clzll(v);
}

/* Length in bits of the omega code of v >= 1. */
static inline uint64_t
elias_code_length(uint64_t v)
{
    uint64_t length = 1;
    while (v > 1) {
        int width = elias_bit_length(v);
        length += (uint64_t)width;
        v = (uint64_t)width - 1;
    }
    return length;
}

typedef struct {
    unsigned char *out;
    uint64_t acc;   /* the last n_pending bits, not yet a whole byte */
    int n_pending;  /* < 8 between calls */
} elias_writer;

static inline void
elias_put(elias_writer *w, uint64_t value, int width)  /* width <= 32 */
{
    w->acc = (w->acc << width) | value;
    w->n_pending += width;
    while (w->n_pending >= 8) {
        w->n_pending -= 8;
        *w->out++ = (unsigned char)(w->acc >> w->n_pending);
    }
    w->acc &= (((uint64_t)1) << w->n_pending) - 1;
}

static inline void
elias_put_code(elias_writer *w, uint64_t v)
{
    /* Groups are defined back to front: v, then bit_length(v) - 1, ... > 1. */
    uint64_t groups[ELIAS_MAX_GROUPS + 1];
    int widths[ELIAS_MAX_GROUPS + 1], n = 0;
    while (v > 1) {
        groups[n] = v;
        widths[n] = elias_bit_length(v);
        v = (uint64_t)widths[n] - 1;
        n++;
    }
    while (n-- > 0) {
        if (widths[n] > 32) {
            elias_put(w, groups[n] >> 32, widths[n] - 32);
            elias_put(w, groups[n] & 0xffffffffu, 32);
        } else {
            elias_put(w, groups[n], widths[n]);
        }
    }
    elias_put(w, 0, 1);
}

#define DEFINE_ELIAS_ENCODE(NAME, T)                                           \
static uint64_t                                                                \
NAME##_length(const T *levels, Py_ssize_t n, Py_ssize_t *n_nonzero)            \
{                                                                              \
    uint64_t bits = 0;                                                         \
    Py_ssize_t count = 0, last = -1;                                           \
    for (Py_ssize_t i = 0; i < n; i++) {                                       \
        if (levels[i] == 0) continue;                                          \
        uint64_t magnitude = levels[i] < 0 ? 0 - (uint64_t)levels[i]           \
                                           : (uint64_t)levels[i];              \
        bits += elias_code_length((uint64_t)(i - last)) + 1                    \
            + elias_code_length(magnitude);                                    \
        last = i;                                                              \
        count++;                                                               \
    }                                                                          \
    *n_nonzero = count;                                                        \
    return bits;                                                               \
}                                                                              \
                                                                               \
static void                                                                    \
NAME##_write(const T *levels, Py_ssize_t n, unsigned char *out)                \
{                                                                              \
    elias_writer w = {out, 0, 0};                                              \
    Py_ssize_t last = -1;                                                      \
    for (Py_ssize_t i = 0; i < n; i++) {                                       \
        if (levels[i] == 0) continue;                                          \
        uint64_t magnitude = levels[i] < 0 ? 0 - (uint64_t)levels[i]           \
                                           : (uint64_t)levels[i];              \
        elias_put_code(&w, (uint64_t)(i - last));                              \
        elias_put(&w, levels[i] < 0, 1);                                       \
        elias_put_code(&w, magnitude);                                         \
        last = i;                                                              \
    }                                                                          \
    if (w.n_pending)  /* pad with ones: no code ends in a 1 */                 \
        *w.out = (unsigned char)((w.acc << (8 - w.n_pending))                  \
                                 | ((1u << (8 - w.n_pending)) - 1));           \
}

DEFINE_ELIAS_ENCODE(elias_encode_i32, int32_t)
DEFINE_ELIAS_ENCODE(elias_encode_i64, int64_t)

PyDoc_STRVAR(elias_encode_sparse_doc,
"elias_encode_sparse(levels)\n"
"--\n\n"
"``(packed, n_nonzero)``: the sparse omega code of a contiguous int32 or\n"
"int64 array of levels, padded with ones to a whole byte. Magnitudes are\n"
"not range-checked here (the caller does).");

static PyObject *
elias_encode_sparse(PyObject *self, PyObject *args)
{
    PyObject *levels_obj;
    if (!PyArg_ParseTuple(args, "O", &levels_obj))
        return NULL;
    Py_buffer levels = {0};
    PyObject *packed = NULL, *result = NULL;
    if (PyObject_GetBuffer(levels_obj, &levels, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    const char *f = levels.format ? levels.format : "B";
    int is64 = levels.itemsize == 8
        && (strcmp(f, "l") == 0 || strcmp(f, "q") == 0);
    int is32 = levels.itemsize == 4 && (strcmp(f, "i") == 0 || strcmp(f, "l") == 0);
    if (levels.ndim != 1 || !(is32 || is64)) {
        PyErr_SetString(PyExc_ValueError,
                        "levels: expected a contiguous 1-d int32 or int64 array");
        goto done;
    }
    Py_ssize_t n = levels.shape[0], n_nonzero = 0;
    uint64_t n_bits;
    Py_BEGIN_ALLOW_THREADS
    n_bits = is64 ? elias_encode_i64_length(levels.buf, n, &n_nonzero)
                  : elias_encode_i32_length(levels.buf, n, &n_nonzero);
    Py_END_ALLOW_THREADS
    packed = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)((n_bits + 7) / 8));
    if (packed == NULL)
        goto done;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(packed);
    Py_BEGIN_ALLOW_THREADS
    if (is64)
        elias_encode_i64_write(levels.buf, n, out);
    else
        elias_encode_i32_write(levels.buf, n, out);
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("On", packed, n_nonzero);
done:
    Py_XDECREF(packed);
    PyBuffer_Release(&levels);
    return result;
}

static PyMethodDef elias_methods[] = {
    {"elias_decode_sparse", elias_decode_sparse, METH_VARARGS,
     elias_decode_sparse_doc},
    {"elias_encode_sparse", elias_encode_sparse, METH_VARARGS,
     elias_encode_sparse_doc},
    {NULL, NULL, 0, NULL},
};

static int
add_elias_functions(PyObject *module)
{
    return PyModule_AddFunctions(module, elias_methods);
}
