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
 * A step touches only the columns of its rows: with ``mark`` (d flags, all 0
 * on entry) the columns first written are appended to ``touched``, so that
 * the step loop updates, checks and clears those alone. ``out`` is added to,
 * not cleared: the caller zeroes it.
 *
 * The structure (offsets within the entries, indices within [0, d)) is
 * trusted: the estimator checks it in full once (_sparse.as_csr).
 */

#define DEFINE_CSR_KERNEL(NAME, T, I)                                          \
static void NAME(                                                              \
    const T *data, const I *indices, const I *indptr, const T *y,              \
    const T *weight, const T *w, double b, const Py_ssize_t *rows,             \
    Py_ssize_t n_rows, double scale, T *out, unsigned char *mark,              \
    Py_ssize_t *touched, Py_ssize_t *n_touched, double sums[3])                \
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
        /* zk != zk: a NaN must reach the caller, as in NumPy. */             \
        double r = (zk > 0.0 ? zk : (zk != zk ? zk : 0.0)) - (double)y[row];   \
        double slope = zk > 0.0 ? 1.0 : (zk == 0.0 ? 0.5 : (zk != zk ? zk : 0.0)); \
        double ci = s * r * slope * scale;                                     \
        c_sum += ci;                                                           \
        loss_sum += s * r * r;                                                 \
        weight_sum += s;                                                       \
        if (ci == 0.0)                                                         \
            continue;                                                          \
        T c = (T)ci;                                                           \
        if (mark != NULL)                                                      \
            for (Py_ssize_t k = lo; k < hi; k++) {                             \
                Py_ssize_t j = (Py_ssize_t)indices[k];                         \
                if (!mark[j]) { mark[j] = 1; touched[(*n_touched)++] = j; }    \
                out[j] += c * data[k];                                         \
            }                                                                  \
        else                                                                   \
            for (Py_ssize_t k = lo; k < hi; k++)                               \
                out[indices[k]] += c * data[k];                                \
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
             double scale, void *out, unsigned char *mark, Py_ssize_t *touched,
             Py_ssize_t *n_touched, double sums[3])
{
    if (itemsize == 8 && X->wide)
        csr_gradient_f64_i64(X->data, X->indices, X->indptr, y, weight, w, b, rows,
                             n_rows, scale, out, mark, touched, n_touched, sums);
    else if (itemsize == 8)
        csr_gradient_f64_i32(X->data, X->indices, X->indptr, y, weight, w, b, rows,
                             n_rows, scale, out, mark, touched, n_touched, sums);
    else if (X->wide)
        csr_gradient_f32_i64(X->data, X->indices, X->indptr, y, weight, w, b, rows,
                             n_rows, scale, out, mark, touched, n_touched, sums);
    else
        csr_gradient_f32_i32(X->data, X->indices, X->indptr, y, weight, w, b, rows,
                             n_rows, scale, out, mark, touched, n_touched, sums);
}
