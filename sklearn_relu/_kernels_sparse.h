/* The mini-batch gradient on CSR rows: a section of _kernels.c, which includes
 * it once, before _kernels_steps.h (whose loop runs it too).
 *
 * Semantics as the dense kernel's (_kernels_gradient.h), on a row's stored
 * entries only: z_i = sum_k x_ik w_k + b, in double; c_i = s_i r_i relu'(z_i)
 * scale, rounded to T; out[j] += c_i x_ij for each stored entry of each row,
 * in T, row after row in the order given (sorted), a row's entries in their
 * stored order. One fixed sequence of additions on one thread: the same bits
 * in every backend. Rows whose c_i is 0 (z_i < 0) add nothing.
 *
 * The step loop (_kernels_steps.h, DEFINE_SPARSE_STEPS) runs its own copy,
 * csr_steps_*, of the same arithmetic on its cells: each column's parameter
 * beside the workers' gradient values of the column, whose update it applies
 * when a later step's row first reads the column.
 *
 * The structure (offsets within the entries, indices within [0, d)) is
 * trusted: the estimator checks it in full once (_sparse.as_csr).
 */

/* Entries ahead whose column's cache line is asked for (a row's columns are
 * random: the hardware cannot guess them). */
#define SPARSE_AHEAD 16

/* The values a column's cell in the step loop holds (its parameter and the
 * W workers' gradient values), rounded up to an even number: cells of 1 or
 * 3 workers then never straddle two cache lines. */
#define CELL_STRIDE(W) ((Py_ssize_t)(((W) + 2) & ~1))

#define DEFINE_CSR_KERNEL(NAME, T, I)                                          \
static void NAME(                                                              \
    const T *data, const I *indices, const I *indptr, const T *y,              \
    const T *weight, const T *w, double b, const Py_ssize_t *rows,             \
    Py_ssize_t n_rows, double scale, T *out, double sums[3])                   \
{                                                                              \
    double c_sum = 0.0, loss_sum = 0.0, weight_sum = 0.0;                      \
    for (Py_ssize_t i = 0; i < n_rows; i++) {                                  \
        Py_ssize_t row = rows[i];                                              \
        Py_ssize_t lo = (Py_ssize_t)indptr[row], hi = (Py_ssize_t)indptr[row + 1]; \
        double dot = 0.0;                                                      \
        for (Py_ssize_t k = lo; k < hi; k++)                                   \
            dot += (double)data[k] * (double)w[indices[k]];                    \
        double zk = dot + b;                                                   \
        double s = weight ? (double)weight[row] : 1.0;                         \
        double r = relu_residual(zk, (double)y[row]);                          \
        double slope = relu_slope(zk);                                         \
        double ci = s * r * slope * scale;                                     \
        c_sum += ci;                                                           \
        loss_sum += s * r * r;                                                 \
        weight_sum += s;                                                       \
        if (ci == 0.0)                                                         \
            continue;                                                          \
        T c = (T)ci;                                                           \
        for (Py_ssize_t k = lo; k < hi; k++)                                   \
            out[indices[k]] += c * data[k];                                    \
    }                                                                          \
    sums[0] = c_sum;                                                           \
    sums[1] = 0.5 * loss_sum;                                                  \
    sums[2] = weight_sum;                                                      \
}

DEFINE_CSR_KERNEL(csr_gradient_f64_i32, double, int32_t)
DEFINE_CSR_KERNEL(csr_gradient_f64_i64, double, int64_t)
DEFINE_CSR_KERNEL(csr_gradient_f32_i32, float, int32_t)
DEFINE_CSR_KERNEL(csr_gradient_f32_i64, float, int64_t)

/* CSR rows as the kernels read them: the three arrays, their index width. */
typedef struct {
    const void *data, *indices, *indptr;
    int wide;                       /* int64 indices and offsets, else int32 */
} csr_rows;

/* The kernel for T (8 or 4 bytes) and the rows' index width. */
static void
csr_gradient(int itemsize, const csr_rows *X, const void *y, const void *weight,
             const void *w, double b, const Py_ssize_t *rows, Py_ssize_t n_rows,
             double scale, void *out, double sums[3])
{
#define CSR_CALL(NAME)                                                         \
    NAME(X->data, X->indices, X->indptr, y, weight, w, b, rows, n_rows, scale, \
         out, sums)
    if (itemsize == 8 && X->wide)
        CSR_CALL(csr_gradient_f64_i64);
    else if (itemsize == 8)
        CSR_CALL(csr_gradient_f64_i32);
    else if (X->wide)
        CSR_CALL(csr_gradient_f32_i64);
    else
        CSR_CALL(csr_gradient_f32_i32);
#undef CSR_CALL
}

/* A column's cell in the step loop: its parameter, the W workers' gradient
 * values, the step whose gradient they hold (-1: none). Applying it sums the
 * values in worker order and takes params - lr * sum, in T, as the dense
 * loop does; it clears them. A value that is not finite sets bad_gradient,
 * an update that is not finite clears finite. */
#define DEFINE_SPARSE_CELL(NAME, T)                                            \
static inline __attribute__((always_inline)) void                              \
NAME(T *cell, int n_workers, T lr, int *bad_gradient, int *finite)             \
{                                                                              \
    T sum = cell[1];                                                           \
    for (int v = 1; v < n_workers; v++) sum += cell[1 + v];                    \
    if (!isfinite((double)sum))                                                \
        for (int v = 0; v < n_workers; v++)                                    \
            *bad_gradient |= !isfinite((double)cell[1 + v]);                   \
    for (int v = 0; v < n_workers; v++) cell[1 + v] = 0;                       \
    T product = lr * sum;                                                      \
    T updated = cell[0] - product;                                             \
    *finite &= isfinite((double)updated) != 0;                                 \
    cell[0] = updated;                                                         \
}

DEFINE_SPARSE_CELL(sparse_cell_f64, double)
DEFINE_SPARSE_CELL(sparse_cell_f32, float)


/* The kernel above in the step loop, on its cells (CELL_STRIDE(NW) apart),
 * as worker ``w`` of NW: a row that is the step's first to read a column
 * (its bit in ``seen``, cleared at each step, is 0) first applies the update
 * the column's cell holds from an earlier step (with none held the values
 * are 0, and params - lr * 0 leaves the parameter as it is, bit for bit).
 * The same arithmetic as csr_gradient_*: the same bits.
 *
 * Written for speed, as a per-sample SGD's loop is: no branch on a cell
 * (a likely cache miss: a branch on it that the processor guesses wrong
 * would wait for it before asking for the next ones) and no check of each
 * value. A parameter or held gradient that is not finite makes the z of
 * the row that reads it not finite, which is checked once a row: then the
 * row's parameters say which (bad_gradient: the row's z itself; finite
 * cleared: an update). NW is 1 (a constant: the loops over the workers
 * vanish) or n_workers. */
#define DEFINE_CSR_STEPS_KERNEL(NAME, T, I, NW)                                \
static void NAME(                                                              \
    const void *data_, const void *indices_, const void *indptr_,              \
    const void *y_, const void *weight_, T *cells, uint64_t *seen,            \
    int n_workers, int w, T lr, double b, const Py_ssize_t *rows,              \
    Py_ssize_t n_rows, double scale, int *bad_gradient, int *finite,           \
    double sums[3])                                                            \
{                                                                              \
    const T *restrict data = data_, *restrict y = y_, *restrict weight = weight_; \
    const I *restrict indices = indices_, *restrict indptr = indptr_;          \
    const int W = (NW);                                                        \
    const Py_ssize_t S = CELL_STRIDE(W);                                       \
    double c_sum = 0.0, loss_sum = 0.0, weight_sum = 0.0;                      \
    (void)n_workers;                                                           \
    for (Py_ssize_t i = 0; i < n_rows; i++) {                                  \
        Py_ssize_t row = rows[i];                                              \
        Py_ssize_t lo = (Py_ssize_t)indptr[row], hi = (Py_ssize_t)indptr[row + 1]; \
        if (i + 1 < n_rows) {                                                  \
            /* the next row's entries are elsewhere: ask for them now */      \
            Py_ssize_t next = rows[i + 1];                                     \
            Py_ssize_t a = (Py_ssize_t)indptr[next], z = (Py_ssize_t)indptr[next + 1]; \
            for (Py_ssize_t k = a; k < z; k += 64 / sizeof(I))                 \
                __builtin_prefetch(indices + k, 0, 3);                         \
            for (Py_ssize_t k = a; k < z; k += 64 / sizeof(T))                 \
                __builtin_prefetch(data + k, 0, 3);                            \
        }                                                                      \
        double dot = 0.0;                                                      \
        for (Py_ssize_t k = lo; k < hi; k++) {                                 \
            /* the columns are random: ask for a later one's line early */   \
            if (k + SPARSE_AHEAD < hi)                                         \
                __builtin_prefetch(cells + (Py_ssize_t)indices[k + SPARSE_AHEAD] * S, 1, 3); \
            Py_ssize_t j = (Py_ssize_t)indices[k];                             \
            T *cell = cells + j * S;                                           \
            uint64_t bit = (uint64_t)1 << (j & 63), word = seen[j >> 6];       \
            int held = (word & bit) == 0;                                      \
            seen[j >> 6] = word | bit;                                         \
            T sum = cell[1];                                                   \
            for (int v = 1; v < W; v++) sum += cell[1 + v];                    \
            T product = lr * sum;                                              \
            T updated = cell[0] - product;                                     \
            T param = held ? updated : cell[0];                                \
            cell[0] = param;                                                   \
            for (int v = 0; v < W; v++) cell[1 + v] = held ? (T)0 : cell[1 + v]; \
            dot += (double)data[k] * (double)param;                            \
        }                                                                      \
        if (!isfinite(dot)) {                                                  \
            int params_finite = 1;                                             \
            for (Py_ssize_t k = lo; k < hi; k++)                               \
                params_finite &= isfinite((double)cells[(Py_ssize_t)indices[k] * S]) != 0; \
            if (params_finite) *bad_gradient = 1;                              \
            else *finite = 0;                                                  \
            break;                                                             \
        }                                                                      \
        double zk = dot + b;                                                   \
        double s = weight ? (double)weight[row] : 1.0;                         \
        double r = relu_residual(zk, (double)y[row]);                          \
        double slope = relu_slope(zk);                                         \
        double ci = s * r * slope * scale;                                     \
        c_sum += ci;                                                           \
        loss_sum += s * r * r;                                                 \
        weight_sum += s;                                                       \
        if (ci == 0.0)                                                         \
            continue;                                                          \
        T c = (T)ci;                                                           \
        for (Py_ssize_t k = lo; k < hi; k++)                                   \
            cells[(Py_ssize_t)indices[k] * S + 1 + w] += c * data[k];          \
    }                                                                          \
    sums[0] = c_sum;                                                           \
    sums[1] = 0.5 * loss_sum;                                                  \
    sums[2] = weight_sum;                                                      \
}

DEFINE_CSR_STEPS_KERNEL(csr_steps_f64_i32, double, int32_t, n_workers)
DEFINE_CSR_STEPS_KERNEL(csr_steps_f64_i64, double, int64_t, n_workers)
DEFINE_CSR_STEPS_KERNEL(csr_steps_f32_i32, float, int32_t, n_workers)
DEFINE_CSR_STEPS_KERNEL(csr_steps_f32_i64, float, int64_t, n_workers)
DEFINE_CSR_STEPS_KERNEL(csr_steps1_f64_i32, double, int32_t, 1)
DEFINE_CSR_STEPS_KERNEL(csr_steps1_f64_i64, double, int64_t, 1)
DEFINE_CSR_STEPS_KERNEL(csr_steps1_f32_i32, float, int32_t, 1)
DEFINE_CSR_STEPS_KERNEL(csr_steps1_f32_i64, float, int64_t, 1)
