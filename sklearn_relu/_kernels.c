/* The optional C extension sklearn_relu._kernels: the package's compiled fast
 * paths, and their Python binding.
 *
 * One translation unit in sections, each a file included once, in this order:
 *
 *   _kernels_gradient.h  the fused mini-batch gradient (gradient_part)
 *   _kernels_numpy.h     NumPy's draws and sums, reproduced bit for bit
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

/* Defined in _kernels_elias.h, included at the end of this file. */
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

#include "_kernels_elias.h"
