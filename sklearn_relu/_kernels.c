/* The optional C extension sklearn_relu._kernels: the package's compiled fast
 * paths, and their Python binding.
 *
 * One translation unit in sections, each a file included once, in this order:
 *
 *   _kernels_gradient.h  the fused mini-batch gradient (gradient_part)
 *   _kernels_numpy.h     NumPy's draws and sums, reproduced bit for bit
 *   _kernels_sparse.h    the gradient on CSR rows
 *   _kernels_helper.h    the second thread of a run of steps
 *   _kernels_steps.h     many SGD steps in one call (sgd_steps)
 *   this file            the Python binding of the two above
 *   _kernels_elias.h     Elias-omega coding of QSGD's levels
 *
 * One translation unit, not several: the sections share static helpers, the
 * compiler inlines across them, and the build (setup.py) stays one source.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "_kernels_gradient.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <float.h>
#include <time.h>

/* The steps reproduce NumPy's arithmetic: no contraction of a product and a
 * sum into a fused multiply-add (see _kernels_steps.h). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "_kernels_numpy.h"
#include "_kernels_sparse.h"
#include "_kernels_helper.h"
#include "_kernels_steps.h"

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

/* Row offsets and column indices: int32 ("i") or int64 ("l", "q", "n"). */
static int
index_width(Py_buffer *view, const char *name)
{
    const char *f = view->format;
    if (f && view->itemsize == 4 && strcmp(f, "i") == 0)
        return 4;
    if (f && view->itemsize == 8
        && (strcmp(f, "l") == 0 || strcmp(f, "q") == 0 || strcmp(f, "n") == 0))
        return 8;
    PyErr_Format(PyExc_ValueError, "%s: expected int32 or int64", name);
    return 0;
}

/* A SciPy CSR matrix's arrays (its attributes data, indices, indptr and
 * shape) in views[0..2]: data in ``format`` ("d" or "f"; NULL: either),
 * indices and offsets of one width, n + 1 offsets whose last is within the
 * entries. Its rows' structure beyond that is trusted (see
 * _kernels_sparse.h). */
static int
get_csr(PyObject *X_obj, Py_buffer views[3], csr_rows *csr, Py_ssize_t *n,
        Py_ssize_t *d, const char *format)
{
    static const char *names[3] = {"data", "indices", "indptr"};
    PyObject *shape = PyObject_GetAttrString(X_obj, "shape");
    if (shape == NULL)
        return -1;
    int parsed = PyArg_ParseTuple(shape, "nn", n, d);
    Py_DECREF(shape);
    if (!parsed)
        return -1;
    for (int k = 0; k < 3; k++) {
        PyObject *array = PyObject_GetAttrString(X_obj, names[k]);
        if (array == NULL)
            return -1;
        int got = PyObject_GetBuffer(array, &views[k], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT);
        Py_DECREF(array);  /* the view holds its own reference */
        if (got < 0)
            return -1;
        if (views[k].ndim != 1) {
            PyErr_Format(PyExc_ValueError, "X.%s: expected a 1-d array", names[k]);
            return -1;
        }
    }
    const char *f = views[0].format;
    if (!(f && (strcmp(f, "d") == 0 || strcmp(f, "f") == 0))
        || (format != NULL && strcmp(f, format) != 0)) {
        PyErr_SetString(PyExc_ValueError, "X.data: expected float64 or float32 "
                        "(the dtype of the other arrays)");
        return -1;
    }
    int width = index_width(&views[1], "X.indices");
    if (width == 0)
        return -1;
    if (index_width(&views[2], "X.indptr") != width) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError,
                            "X.indptr: expected the integer type of X.indices");
        return -1;
    }
    Py_ssize_t nnz = views[0].shape[0] < views[1].shape[0]
        ? views[0].shape[0] : views[1].shape[0];
    Py_ssize_t last = -1;
    if (views[2].shape[0] == *n + 1)
        last = width == 8 ? (Py_ssize_t)((const int64_t *)views[2].buf)[*n]
                          : (Py_ssize_t)((const int32_t *)views[2].buf)[*n];
    if (*n < 0 || *d < 0 || last < 0 || last > nnz) {
        PyErr_SetString(PyExc_ValueError,
                        "X: expected n_samples + 1 row offsets within its entries");
        return -1;
    }
    csr->data = views[0].buf;
    csr->indices = views[1].buf;
    csr->indptr = views[2].buf;
    csr->wide = width == 8;
    return 0;
}

/* The vectors of a gradient_part call beside X: y and sample_weight (or
 * None) of n values, coef and the writable out of d, all of X's format and
 * item size, and the int64 rows. -1 with an exception set when one is not;
 * the caller releases every view, filled or not. */
static int
get_gradient_vectors(PyObject *y_obj, PyObject *weight_obj, PyObject *coef_obj,
                     PyObject *rows_obj, PyObject *out_obj, const char *format,
                     Py_ssize_t size, Py_ssize_t n, Py_ssize_t d, Py_buffer *y,
                     Py_buffer *weight, Py_buffer *coef, Py_buffer *rows, Py_buffer *out)
{
    if (get_vector(y_obj, y, "y", 0, format, size, n) < 0
        || (weight_obj != Py_None
            && get_vector(weight_obj, weight, "sample_weight", 0, format, size, n) < 0)
        || get_vector(coef_obj, coef, "coef", 0, format, size, d) < 0
        || get_vector(rows_obj, rows, "rows", 0, NULL, sizeof(Py_ssize_t), 0) < 0
        || !is_integer_format(rows)
        || get_vector(out_obj, out, "out", 1, format, size, d) < 0)
        return -1;
    return 0;
}

PyDoc_STRVAR(csr_gradient_part_doc,
"csr_gradient_part(X, y, sample_weight, coef, intercept, rows, scale, out)\n"
"--\n\n"
"gradient_part for a SciPy CSR matrix X (float32 or float64 entries, int32\n"
"or int64 indices): write sum_i c_i x_i over ``rows`` into ``out``, one row\n"
"after another; return ``(sum_i c_i, loss_sum, weight_sum)``. The structure\n"
"of X is trusted (checked once by the estimator).");

static PyObject *
csr_gradient_part(PyObject *self, PyObject *args)
{
    PyObject *X_obj, *y_obj, *weight_obj, *coef_obj, *rows_obj, *out_obj;
    double intercept, scale;
    if (!PyArg_ParseTuple(args, "OOOOdOdO", &X_obj, &y_obj, &weight_obj,
                          &coef_obj, &intercept, &rows_obj, &scale, &out_obj))
        return NULL;
    Py_buffer X[3] = {{0}}, y = {0}, weight = {0}, coef = {0}, rows = {0}, out = {0};
    PyObject *result = NULL;
    csr_rows csr;
    Py_ssize_t n, d;
    double sums[3];
    if (get_csr(X_obj, X, &csr, &n, &d, NULL) < 0)
        goto done;
    const char *format = X[0].format;
    Py_ssize_t size = X[0].itemsize;
    if (get_gradient_vectors(y_obj, weight_obj, coef_obj, rows_obj, out_obj, format, size,
                             n, d, &y, &weight, &coef, &rows, &out) < 0)
        goto done;
    Py_BEGIN_ALLOW_THREADS
    memset(out.buf, 0, (size_t)d * (size_t)size);
    csr_gradient((int)size, &csr, y.buf, weight.buf, coef.buf, intercept, rows.buf,
                 rows.shape[0], scale, out.buf, sums);
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("ddd", sums[0], sums[1], sums[2]);

done:
    for (int k = 0; k < 3; k++) PyBuffer_Release(&X[k]);
    PyBuffer_Release(&y);
    PyBuffer_Release(&weight);
    PyBuffer_Release(&coef);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&out);
    return result;
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
    if (get_gradient_vectors(y_obj, weight_obj, coef_obj, rows_obj, out_obj, format, size,
                             n, d, &y, &weight, &coef, &rows, &out) < 0)
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

/* Defined in _kernels_elias.h, included at the end of this file. */
static int add_elias_functions(PyObject *module);

#if defined(__linux__)
#include <sys/mman.h>
#endif

/* Ask for huge pages over [start, end), as NumPy does for its large arrays:
 * the sparse steps read their cells at random, and with 4 KiB pages nearly
 * every read also misses the TLB. Only where Linux offers it; a no-op
 * elsewhere or when refused. */
static void
advise_huge_pages(void *start, void *end)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)1 << 21;
    uintptr_t first = ((uintptr_t)start + huge - 1) & ~(huge - 1);
    uintptr_t last = (uintptr_t)end & ~(huge - 1);
    if (last > first)
        (void)madvise((void *)first, last - first, MADV_HUGEPAGE);
#else
    (void)start; (void)end;
#endif
}

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
        for (int k = 0; k < 6; k++) PyBuffer_Release(&workers[w].views[k]);
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
    int n_csr = 0;  /* whether the workers' X are CSR */
    for (int w = 0; w < n_workers; w++) {
        steps_worker *wk = &workers[w];
        PyObject *X_obj, *y_obj, *weight_obj, *capsule, *loss_obj;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, w), "OOOOndO",
                              &X_obj, &y_obj, &weight_obj, &capsule, &wk->m,
                              &wk->scale, &loss_obj))
            goto done;
        /* An array of rows, or a SciPy CSR matrix (no buffer of its own). */
        int csr = !PyObject_CheckBuffer(X_obj);
        if (w > 0 && csr != n_csr) {
            PyErr_SetString(PyExc_ValueError,
                            "sgd_steps: the workers' X must all be dense or all CSR");
            goto done;
        }
        n_csr = csr;
        Py_ssize_t n, d_X;
        if (csr) {
            if (get_csr(X_obj, wk->views, &wk->sparse, &n, &d_X, format) < 0)
                goto done;
            wk->X = NULL;
        } else {
            if (PyObject_GetBuffer(X_obj, &wk->views[0],
                                   PyBUF_STRIDED_RO | PyBUF_FORMAT) < 0)
                goto done;
            Py_buffer *X = &wk->views[0];
            if (X->ndim != 2 || strcmp(X->format, format) != 0
                || X->strides[1] != size || X->strides[0] % size != 0) {
                d_X = -1;
            } else {
                d_X = X->shape[1];
            }
            n = X->ndim == 2 ? X->shape[0] : 0;
            wk->X = X->buf;
            wk->row_stride = X->strides[0];
        }
        if (d_X != n_features || n < 1 || n > (Py_ssize_t)UINT32_MAX || wk->m < 1) {
            PyErr_SetString(PyExc_ValueError,
                            "sgd_steps: X must have the dtype of params, n_features "
                            "contiguous columns and 1 to 2**32 - 1 rows");
            goto done;
        }
        if (get_vector(y_obj, &wk->views[3], "y", 0, format, size, n) < 0
            || (weight_obj != Py_None
                && get_vector(weight_obj, &wk->views[4], "sample_weight", 0, format,
                              size, n) < 0)
            || get_vector(loss_obj, &wk->views[5], "batch_loss", 1, "d", 8, 2) < 0)
            goto done;
        wk->gen = PyCapsule_GetPointer(capsule, "BitGenerator");
        if (wk->gen == NULL)
            goto done;
        wk->n_rows = n;
        wk->y = wk->views[3].buf;
        wk->weight = weight_obj == Py_None ? NULL : wk->views[4].buf;
        wk->batch_loss = wk->views[5].buf;
        if (wk->m > max_m) max_m = wk->m;
    }
    su.d = n_features;
    su.p = p;
    su.levels = levels;
    su.bucket = bucket;
    su.learning_rate = learning_rate;
    su.parallel_min_bytes = parallel_min_bytes;
    /* Exact gradients of CSR rows: steps whose work grows with the rows'
     * entries, not with d (_kernels_steps.h, DEFINE_SPARSE_STEPS). */
    su.sparse = n_csr && levels == 0;
    /* Zeroed, and from Python's raw allocator, which tracemalloc sees. Dense
     * steps: rows, magnitude, squares, norms, norms32, parts, worker vectors,
     * total. Sparse steps: the cells (a parameter and W gradient values a
     * column), rows, a bit a column. */
    size_t n_buckets = (size_t)((p + bucket - 1) / bucket);
    size_t bytes = su.sparse
        ? (size_t)CELL_STRIDE(n_workers) * (size_t)p * (size_t)size
            + (size_t)max_m * sizeof(Py_ssize_t)
            + (size_t)((n_features + 63) / 64) * sizeof(uint64_t) + 64
        : (size_t)max_m * sizeof(Py_ssize_t) + 2 * (size_t)p * sizeof(double)
            + 2 * n_buckets * sizeof(double)
            + ((size_t)(2 + n_workers) * (size_t)p + (size_t)p) * (size_t)size + 64;
    scratch = PyMem_RawCalloc(1, bytes);
    if (scratch == NULL) { PyErr_NoMemory(); goto done; }
    char *cursor = scratch;
    void *cells = NULL, *parts = NULL, *vectors = NULL, *total = NULL;
    if (su.sparse) {
        cells = cursor; cursor += (size_t)CELL_STRIDE(n_workers) * (size_t)p * (size_t)size;
        advise_huge_pages(cells, cursor);
        cursor += -(uintptr_t)cursor % sizeof(Py_ssize_t);  /* in the 64 spare */
        su.rows = (Py_ssize_t *)cursor; cursor += (size_t)max_m * sizeof(Py_ssize_t);
        su.seen = (uint64_t *)cursor;
    } else {
        su.rows = (Py_ssize_t *)cursor; cursor += (size_t)max_m * sizeof(Py_ssize_t);
        su.magnitude = (double *)cursor; cursor += (size_t)p * sizeof(double);
        su.squares = (double *)cursor; cursor += (size_t)p * sizeof(double);
        su.norms = (double *)cursor; cursor += n_buckets * sizeof(double);
        su.norms32 = (double *)cursor; cursor += n_buckets * sizeof(double);
        parts = cursor; cursor += 2 * (size_t)p * (size_t)size;
        vectors = cursor; cursor += (size_t)n_workers * (size_t)p * (size_t)size;
        total = cursor;
    }

    int large = 0;
    for (int w = 0; w < n_workers; w++)  /* CSR rows: one thread */
        large |= workers[w].X != NULL
            && workers[w].m * n_features * size >= parallel_min_bytes;
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
    if (su.sparse && size == 8)
        status = sparse_steps_f64(workers, n_workers, &su, params.buf, n_steps, cells,
                                  &steps_done, seconds);
    else if (su.sparse)
        status = sparse_steps_f32(workers, n_workers, &su, params.buf, n_steps, cells,
                                  &steps_done, seconds);
    else if (size == 8)
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
    PyMem_RawFree(scratch);
    PyBuffer_Release(&params);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"gradient_part", gradient_part, METH_VARARGS, gradient_part_doc},
    {"csr_gradient_part", csr_gradient_part, METH_VARARGS, csr_gradient_part_doc},
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

#include "_kernels_elias.h"
