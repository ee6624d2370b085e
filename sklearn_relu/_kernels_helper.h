static double
seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A second thread for the large batches of a run of steps (sgd_steps, in
 * _kernels_steps.h); a section of _kernels.c, which includes it once.
 *
 * The per-step path hands the second half of a batch to a pooled Python
 * thread, which sleeps between steps; waking it costs about what it saves
 * (docs/benchmarks.rst, "How a fit takes its steps"). Here one helper thread
 * per process, started
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

/* Waiting: PAUSE_LIMIT spins on the CPU's pause instruction, then yields up
 * to YIELD_LIMIT times; past that the helper sleeps until work arrives. */
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
 * later rather than keep a core busy (a BLAS call right after a fit ran
 * several times slower while it yielded), but not at once: the next epoch of
 * a fit starts within that time, and a helper woken from sleep ran on its
 * caller's core for its first steps, which then took longer inside a fit
 * than back to back (the timings: docs/benchmarks.rst). */
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
