/* ==========================================================================
 * Elias-omega coding of QSGD's sparse levels (compression/_elias.py).
 *
 * A section of _kernels.c, which includes it once, last: nothing else depends
 * on it, except the one call in PyInit__kernels that adds these functions to
 * the module. It uses the buffer checks of _kernels.c (get_vector,
 * is_integer_format).
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
