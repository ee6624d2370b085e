/* NumPy's draws and sums, reproduced for sgd_steps (_kernels_steps.h): the
 * same integers from the same bit generator, the same sort result, the same
 * rounding of sums. A section of _kernels.c, which includes it once, compiled
 * without contraction (as NumPy is).
 */

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
