/* Many SGD steps in one call: a section of _kernels.c, which includes it once,
 * after _kernels_numpy.h and _kernels_helper.h.
 *
 * The in-process fast path of _steps.py. For a small batch (d = 100, 200 rows)
 * the Python around the arithmetic of a step (drawing the batch, sorting it,
 * calling the kernel, compressing, decoding, checking, updating) took many
 * times the arithmetic (docs/benchmarks.rst, "How a fit takes its steps").
 * sgd_steps runs n_steps whole steps here, with
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
 * the product first): _kernels.c compiles this section, and the two it
 * builds on, without contraction.
 */
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
    const char *X;                  /* dense rows, or NULL: CSR rows in sparse */
    csr_rows sparse;
    Py_ssize_t row_stride, n_rows, m;
    const void *y, *weight;
    relu_bitgen_t *gen;
    double scale;
    double *batch_loss;             /* [loss_sum, draws], carried on */
    Py_buffer views[6];             /* X (or its 3 CSR arrays), y, weight, batch_loss */
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
    int sparse;                     /* CSR rows, exact gradients: DEFINE_SPARSE_STEPS */
    uint64_t *seen;                 /* a bit a column: read in this step */
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
            double b = p > d ? (double)params[d] : 0.0;                        \
            if (wk->X == NULL) {                                               \
                /* CSR rows (QSGD): one pass, as csr_gradient_part makes it */ \
                double sums[3];                                                \
                memset(g, 0, (size_t)d * sizeof(T));                           \
                csr_gradient((int)sizeof(T), &wk->sparse, wk->y, wk->weight,   \
                             params, b, su->rows, m, wk->scale, g, sums);      \
                if (p > d) g[d] = (T)sums[0];                                  \
                wk->batch_loss[0] += sums[1];                                  \
            } else {                                                           \
            double sums[2][3];                                                 \
            Py_ssize_t half = m / 2;                                           \
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
            }                                                                  \
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

/* Steps of exact gradients on CSR rows, whose work grows with the batch's
 * stored entries, not with d. A step's gradient is zero but on the columns
 * of its rows whose c is not 0: there the dense loop's sum is 0, and its
 * update params - lr * 0 leaves the parameter as it is, bit for bit. So a
 * column's update is applied only where its gradient may not be 0, and
 * late: when a later step's row first reads the column, or at the end of
 * the call. Nothing reads the column in between, so every z sees the
 * parameters the dense loop would, and each update is the same arithmetic
 * (the workers' values summed in worker order, in T; params - lr * sum).
 * A stored entry's z, g and update then touch one cache line of the
 * d-vectors, once (a per-sample SGD's dot product and update touch it once
 * too), where an update pass after each step would touch it twice.
 *
 * ``cells`` keeps column j at j * (W + 2): its parameter, the W workers'
 * gradient values of the column, and the step (within this call) whose
 * gradient they hold, -1 for none. The intercept is updated at every step.
 * A gradient or update that is not finite is found when it is applied, at
 * the step that applies it, not necessarily the step that made it (the
 * caller raises DivergenceError either way; its model is discarded).
 */
#define DEFINE_SPARSE_STEPS(NAME, T, CELL, KERNEL32, KERNEL64, KERNEL1_32,     \
                            KERNEL1_64)                                        \
static int                                                                     \
NAME(steps_worker *workers, int n_workers, steps_setup *su, T *params,         \
     Py_ssize_t n_steps, T *cells, Py_ssize_t *done, double *seconds)          \
{                                                                              \
    const Py_ssize_t d = su->d, p = su->p, S = CELL_STRIDE(n_workers);         \
    const T lr = (T)su->learning_rate;                                         \
    for (Py_ssize_t j = 0; j < p; j++) cells[j * S] = params[j];               \
    int status = STEPS_DONE, bad_gradient = 0, finite = 1;                     \
    Py_ssize_t step;                                                           \
    for (step = 0; step < n_steps; step++) {                                   \
        double t0 = seconds_now();                                             \
        double b = p > d ? (double)cells[d * S] : 0.0;                         \
        memset(su->seen, 0, (size_t)((d + 63) / 64) * sizeof(uint64_t));       \
        for (int w = 0; w < n_workers && !bad_gradient && finite; w++) {       \
            steps_worker *wk = &workers[w];                                    \
            Py_ssize_t m = wk->m;                                              \
            uint32_t rng = (uint32_t)(wk->n_rows - 1);                         \
            for (Py_ssize_t i = 0; i < m; i++)                                 \
                su->rows[i] = (Py_ssize_t)bounded_uint32(wk->gen, rng);        \
            sort_rows(su->rows, m);                                            \
            double sums[3];                                                    \
            void (*kernel)(const void *, const void *, const void *,           \
                           const void *, const void *, T *, uint64_t *, int,   \
                           int, T, double, const Py_ssize_t *, Py_ssize_t,     \
                           double, int *, int *, double *) =                   \
                n_workers == 1 ? (wk->sparse.wide ? KERNEL1_64 : KERNEL1_32)   \
                : (wk->sparse.wide ? KERNEL64 : KERNEL32);                     \
            kernel(wk->sparse.data, wk->sparse.indices, wk->sparse.indptr,     \
                   wk->y, wk->weight, cells, su->seen, n_workers, w, lr, b,    \
                   su->rows, m, wk->scale, &bad_gradient, &finite, sums);      \
            if (p > d) cells[d * S + 1 + w] = (T)sums[0];                      \
            wk->batch_loss[0] += sums[1];                                      \
            wk->batch_loss[1] += (double)m;                                    \
        }                                                                      \
        double t1 = seconds_now();                                             \
        seconds[0] += t1 - t0;                                                 \
        if (p > d && !bad_gradient && finite)                                  \
            CELL(cells + d * S, n_workers, lr, &bad_gradient, &finite);        \
        seconds[1] += seconds_now() - t1;                                      \
        if (bad_gradient || !finite) break;                                    \
    }                                                                          \
    /* The updates not yet applied: the last steps' columns. */               \
    for (Py_ssize_t j = 0; j < d && !bad_gradient && finite; j++)              \
        CELL(cells + j * S, n_workers, lr, &bad_gradient, &finite);            \
    if (bad_gradient) status = STEPS_GRADIENT_OVERFLOW;                        \
    else if (!finite) status = STEPS_UPDATE_OVERFLOW;                          \
    *done = status == STEPS_DONE ? n_steps : (step < n_steps ? step : n_steps - 1); \
    for (Py_ssize_t j = 0; j < p; j++) params[j] = cells[j * S];               \
    return status;                                                             \
}

DEFINE_SPARSE_STEPS(sparse_steps_f64, double, sparse_cell_f64,
                    csr_steps_f64_i32, csr_steps_f64_i64,
                    csr_steps1_f64_i32, csr_steps1_f64_i64)
DEFINE_SPARSE_STEPS(sparse_steps_f32, float, sparse_cell_f32,
                    csr_steps_f32_i32, csr_steps_f32_i64,
                    csr_steps1_f32_i32, csr_steps1_f32_i64)
