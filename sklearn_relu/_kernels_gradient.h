/* The fused mini-batch gradient of the ReLU loss (the fast path of
 * batch_gradient, dispatched by _parallel.py). A section of _kernels.c, which
 * includes it once.
 *
 * One SGD step is memory bound: each sampled row of X is needed twice, once
 * for z = <x, w> + b and once for g += c x. The NumPy path copies the rows into
 * a buffer to hand them to BLAS; here each row is read from memory exactly
 * once, without a copy, and used for both products while it is still in the
 * core's L1/L2 cache.
 *
 * Rows are taken GROUP at a time: their dot products are computed together,
 * in interleaved streams from memory (one row after another is slower: a
 * single stream keeps too few requests in flight), and their contributions
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

/* The residual relu(z) - y of a row and the ReLU's slope at z (1/2 at 0, the
 * generalized gradient of docs/theory.rst); a NaN z stays NaN in both, so that
 * it reaches the caller, as in NumPy. Every gradient loop (dense, CSR, the
 * sparse steps) takes its row coefficient s r slope scale from these. */
static inline double
relu_residual(double z, double y)
{
    return (z > 0.0 ? z : (z != z ? z : 0.0)) - y;
}

static inline double
relu_slope(double z)
{
    return z > 0.0 ? 1.0 : (z == 0.0 ? 0.5 : (z != z ? z : 0.0));
}

/* Rows handled together: GROUP interleaved streams from memory. 8 rather
 * than 4: more requests in flight helped float32 rows and cost float64 rows
 * nothing, and two groups of 8 rows of 32 KB (float64, d = 4000) still fit in
 * a core's L2 (the timings: docs/benchmarks.rst, "How the step is made
 * fast"). */
#define GROUP 8

/* Each row's stream asks for the line this far ahead of the one it reads.
 * A sampled row is a fresh stream from memory, and the hardware prefetcher
 * stops at every 4 KiB page; asking ahead keeps lines in flight across them.
 * 512 bytes was the fastest of the distances tried. Rows shorter than a page
 * gain nothing and pay the instructions, so only rows of PREFETCH_MIN_ROW
 * bytes or more ask ahead (the timings of both choices: docs/benchmarks.rst,
 * "How the step is made fast"). The arithmetic is unchanged: the same bits. */
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
 * rides along with it, which brings the kernel closer to a contiguous
 * matrix-vector product over as many rows (docs/benchmarks.rst).
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
            double r = relu_residual(zk, (double)y[row]);                      \
            double slope = relu_slope(zk);                                     \
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
