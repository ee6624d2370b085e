/* Fused mini-batch gradient of the ReLU loss (the fast path of _gradient.py).
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
    _Pragma("GCC unroll 16")                                                   \
    for (int k = 0; k < GROUP; k++) { acc[k] = (VT){0}; cv[k] = (VT){0} + c[k]; } \
    Py_ssize_t j = 0;                                                          \
    if (update) {                                                              \
        for (; j + LANES <= d; j += LANES) {                                   \
            VT wj = NAME##_load(w + j);                                        \
            VT gj = NAME##_load(g + j);                                        \
            _Pragma("GCC unroll 16")                                           \
            for (int k = 0; k < GROUP; k++) {                                  \
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
            for (int k = 0; k < GROUP; k++)                                    \
                acc[k] += NAME##_load(x[k] + j) * wj;                          \
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

static PyMethodDef methods[] = {
    {"gradient_part", gradient_part, METH_VARARGS, gradient_part_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernels",
    "Fused mini-batch ReLU gradient (optional C extension; see _gradient.py).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
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
