/* market._featurestate.FeatureState: the streaming feature state of market/features.py in C.
 *
 * A line-for-line port of market.features.PyFeatureState.update (the readable reference):
 * the same double operations in the same order (built with -ffp-contract=off, so no fused
 * multiply-add), so both return the same bits; tests/test_features.py checks that on every
 * real tick and on interleaved synthetic symbols. It exists because update() was a quarter
 * of the consumer's time while draining (py-spy): docs/benchmarks.md.
 *
 * One buffer holds the ticks of the last 300 s; each window keeps the index of its oldest
 * tick inside (t - W, t] and, where needed, running sums that add a tick on arrival and
 * subtract it on leaving.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "structmember.h"

#define LONG_MS 300000
#define WARMUP_MS LONG_MS
#define N_FEATURES 15

typedef struct {
    int64_t t;
    double p, r2, size, bps, bp; /* bp: |r| * |previous r| */
} Tick;

typedef struct { /* the 60 s maximum of |r|: a queue with |r| decreasing */
    int64_t t;
    double ar;
} Peak;

typedef struct {
    PyObject_HEAD
    Tick* buf;
    Py_ssize_t len, cap;
    Py_ssize_t h1, h5, h10, h30, h60, h300;
    Peak* mx;
    Py_ssize_t mlen, mcap, mxh;
    double lo1, lo5, lo30, lo60;
    double r2_5, r2_10, r2_30, r2_60, r2_300;
    double size60, size300, s300, sp10, bp60;
    int64_t nz5, nz10, nz30, nz60, nz300, nbp60, n300, q10;
    double last_price, last_ar;
    int64_t last_t, start;
    char ready;
} FeatureState;

static double K1, K5, K30, K60, SQRT2, HALF_PI;
static const double LONG_PER_60 = (double)LONG_MS / 60000.0;
static const double LONG_PER_10 = (double)LONG_MS / 10000.0;
static const double LONG_PER_5 = (double)LONG_MS / 5000.0;
static const double LONG_S = (double)LONG_MS / 1000.0;

/* Python's float division and math.log, errors included (the reference raises them). */
static int py_div(double a, double b, double* out) {
    if (b == 0.0) {
        PyErr_SetString(PyExc_ZeroDivisionError, "float division by zero");
        return -1;
    }
    *out = a / b;
    return 0;
}

static int py_log_ratio(double a, double b, double* out) {
    double x;
    if (py_div(a, b, &x) < 0) return -1;
    if (x <= 0.0) {
        PyErr_SetString(PyExc_ValueError, "math domain error");
        return -1;
    }
    *out = log(x);
    return 0;
}

/* A burst can grow the buffer far past what 300 s normally hold: give memory back once it
 * is mostly empty (the Python reference's list does the same). */
static void fs_shrink(FeatureState* s) {
    if (s->cap > 4096 && s->cap > 4 * s->len) {
        Py_ssize_t cap = s->len * 2 > 64 ? s->len * 2 : 64;
        Tick* smaller = s->buf;
        PyMem_Resize(smaller, Tick, (size_t)cap);
        if (smaller != NULL) { /* else keep the larger buffer: nothing is lost */
            s->buf = smaller;
            s->cap = cap;
        }
    }
}

static void mx_shrink(FeatureState* s) {
    if (s->mcap > 4096 && s->mcap > 4 * s->mlen) {
        Py_ssize_t cap = s->mlen * 2 > 64 ? s->mlen * 2 : 64;
        Peak* smaller = s->mx;
        PyMem_Resize(smaller, Peak, (size_t)cap);
        if (smaller != NULL) {
            s->mx = smaller;
            s->mcap = cap;
        }
    }
}

static void fs_reset(FeatureState* s) {
    s->len = 0;
    fs_shrink(s);
    s->mlen = s->mxh = 0;
    mx_shrink(s);
    s->h1 = s->h5 = s->h10 = s->h30 = s->h60 = s->h300 = 0;
    s->lo1 = s->lo5 = s->lo30 = s->lo60 = NAN;
    s->r2_5 = s->r2_10 = s->r2_30 = s->r2_60 = s->r2_300 = 0.0;
    s->size60 = s->size300 = s->s300 = s->sp10 = s->bp60 = 0.0;
    s->nz5 = s->nz10 = s->nz30 = s->nz60 = s->nz300 = s->nbp60 = 0;
    s->n300 = s->q10 = 0;
    s->last_price = NAN;
    s->last_ar = 0.0;
    s->start = 0;
}

static void fs_clear(FeatureState* s) {
    fs_reset(s);
    s->last_t = -((int64_t)1 << 62);
    s->ready = 0;
}

static PyObject* fs_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
    FeatureState* s = (FeatureState*)PyType_GenericNew(type, args, kwds);
    if (s != NULL) fs_clear(s); /* a usable state even without __init__ */
    return (PyObject*)s;
}

static int fs_init(FeatureState* s, PyObject* args, PyObject* kwds) {
    static char* kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "", kwlist)) return -1;
    fs_clear(s);
    return 0;
}

static void fs_dealloc(FeatureState* s) {
    PyMem_Free(s->buf);
    PyMem_Free(s->mx);
    Py_TYPE(s)->tp_free((PyObject*)s);
}

/* Room for one more tick in both buffers, made before any state changes: running out of
 * memory raises MemoryError and leaves the state as it was. */
static int fs_reserve(FeatureState* s) {
    if (s->len == s->cap) {
        Py_ssize_t cap = s->cap ? 2 * s->cap : 64;
        Tick* grown = s->buf;
        PyMem_Resize(grown, Tick, (size_t)cap);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->buf = grown;
        s->cap = cap;
    }
    if (s->mlen == s->mcap) {
        Py_ssize_t cap = s->mcap ? 2 * s->mcap : 64;
        Peak* grown = s->mx;
        PyMem_Resize(grown, Peak, (size_t)cap);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->mx = grown;
        s->mcap = cap;
    }
    return 0;
}

/* One tick into the state; its features into out (FEATURE_NAMES order). -1 with a Python
   exception set if a division or log raises, as in the reference. */
static int fs_step(FeatureState* s, long long t_ms, double price, double size, double bid,
                   double ask, double out[N_FEATURES]) {
    int64_t t = t_ms > s->last_t ? t_ms : s->last_t;
    double mid, bps; /* before any state changes, as in the reference */
    if (py_div(ask - bid, (ask + bid) * 0.5, &mid) < 0) return -1;
    bps = mid * 1e4;
    /* t >= last_t: an unsigned difference cannot overflow (Python's ints do not) */
    if ((uint64_t)t - (uint64_t)s->last_t > WARMUP_MS) { /* first tick, or a gap: restart */
        fs_reset(s);
        s->start = t;
    }
    double last = s->last_price, r = 0.0;
    if (last == last && py_log_ratio(price, last, &r) < 0) return -1;
    double r2 = r * r;
    int nz = r2 != 0.0;
    double ar = fabs(r);
    double bp = ar * s->last_ar;
    int has_bps = bps == bps;
    if (fs_reserve(s) < 0) return -1;
    s->buf[s->len++] = (Tick){t, price, r2, size, bps, bp};
    s->last_price = price;
    s->last_ar = ar;
    s->last_t = t;
    Tick* buf = s->buf;

    /* 300 s: sum of r^2, trade count, volume, spread sum and count */
    double v300 = s->r2_300 + r2, z300 = s->size300 + size;
    int64_t n300 = s->nz300 + nz;
    double s300 = has_bps ? s->s300 + bps : s->s300;
    int64_t q300 = s->n300 + has_bps;
    Py_ssize_t h = s->h300;
    int64_t edge = t - LONG_MS;
    while (buf[h].t <= edge) {
        v300 -= buf[h].r2;
        z300 -= buf[h].size;
        n300 -= buf[h].r2 != 0.0;
        if (buf[h].bps == buf[h].bps) {
            s300 -= buf[h].bps;
            q300 -= 1;
        }
        h += 1;
    }
    if (n300 == 0 || v300 < 0.0) v300 = 0.0;
    if (q300 == 0) s300 = 0.0;
    s->r2_300 = v300, s->size300 = z300, s->nz300 = n300, s->s300 = s300, s->n300 = q300;
    s->h300 = h;
    Py_ssize_t count300 = s->len - h;

    /* 60 s: sum of r^2, trade count, volume, bipower sum, lag price, largest |r| */
    double s60 = s->r2_60 + r2, z60 = s->size60 + size, b60 = s->bp60 + bp, lo = s->lo60;
    int64_t n60 = s->nz60 + nz, m60 = s->nbp60 + (bp != 0.0);
    h = s->h60;
    edge = t - 60000;
    while (buf[h].t <= edge) {
        lo = buf[h].p;
        s60 -= buf[h].r2;
        z60 -= buf[h].size;
        n60 -= buf[h].r2 != 0.0;
        b60 -= buf[h].bp;
        m60 -= buf[h].bp != 0.0;
        h += 1;
    }
    if (n60 == 0 || s60 < 0.0) s60 = 0.0;
    if (m60 == 0 || b60 < 0.0) b60 = 0.0;
    s->r2_60 = s60, s->size60 = z60, s->nz60 = n60, s->h60 = h, s->lo60 = lo;
    s->bp60 = b60, s->nbp60 = m60;
    Py_ssize_t count60 = s->len - h;
    double ret60 = NAN, ret30 = NAN, ret5 = NAN, ret1 = NAN;
    if (lo == lo && py_log_ratio(price, lo, &ret60) < 0) return -1;
    Peak* mx = s->mx;
    Py_ssize_t mxh = s->mxh;
    while (s->mlen > mxh && mx[s->mlen - 1].ar <= ar) s->mlen -= 1;
    mx[s->mlen++] = (Peak){t, ar}; /* fs_reserve made room */
    while (mx[mxh].t <= edge) mxh += 1;
    double amax = mx[mxh].ar;
    if (mxh > 1024 && mxh * 2 > s->mlen) {
        memmove(mx, mx + mxh, (size_t)(s->mlen - mxh) * sizeof(Peak));
        s->mlen -= mxh;
        mxh = 0;
    }
    s->mxh = mxh;
    mx_shrink(s); /* also when a large move popped a burst's falling |r| off the tail */

    /* 30 s: sum of r^2, lag price */
    double s30 = s->r2_30 + r2;
    int64_t n30 = s->nz30 + nz;
    h = s->h30, lo = s->lo30, edge = t - 30000;
    while (buf[h].t <= edge) {
        lo = buf[h].p;
        s30 -= buf[h].r2;
        n30 -= buf[h].r2 != 0.0;
        h += 1;
    }
    if (n30 == 0 || s30 < 0.0) s30 = 0.0;
    s->r2_30 = s30, s->nz30 = n30, s->h30 = h, s->lo30 = lo;
    if (lo == lo && py_log_ratio(price, lo, &ret30) < 0) return -1;

    /* 10 s: sum of r^2, trade count, spread sum and count */
    double s10 = s->r2_10 + r2, p10 = has_bps ? s->sp10 + bps : s->sp10;
    int64_t n10 = s->nz10 + nz, q10 = s->q10 + has_bps;
    h = s->h10, edge = t - 10000;
    while (buf[h].t <= edge) {
        s10 -= buf[h].r2;
        n10 -= buf[h].r2 != 0.0;
        if (buf[h].bps == buf[h].bps) {
            p10 -= buf[h].bps;
            q10 -= 1;
        }
        h += 1;
    }
    if (n10 == 0 || s10 < 0.0) s10 = 0.0;
    if (q10 == 0) p10 = 0.0;
    s->r2_10 = s10, s->nz10 = n10, s->sp10 = p10, s->q10 = q10, s->h10 = h;
    Py_ssize_t count10 = s->len - h;

    /* 5 s: sum of r^2, lag price; 1 s: lag price */
    double s5 = s->r2_5 + r2;
    int64_t n5 = s->nz5 + nz;
    h = s->h5, lo = s->lo5, edge = t - 5000;
    while (buf[h].t <= edge) {
        lo = buf[h].p;
        s5 -= buf[h].r2;
        n5 -= buf[h].r2 != 0.0;
        h += 1;
    }
    if (n5 == 0 || s5 < 0.0) s5 = 0.0;
    s->r2_5 = s5, s->nz5 = n5, s->h5 = h, s->lo5 = lo;
    if (lo == lo && py_log_ratio(price, lo, &ret5) < 0) return -1;
    h = s->h1, lo = s->lo1, edge = t - 1000;
    while (buf[h].t <= edge) lo = buf[h++].p;
    s->h1 = h, s->lo1 = lo;
    if (lo == lo && py_log_ratio(price, lo, &ret1) < 0) return -1;

    Py_ssize_t h300 = s->h300;
    if (h300 > 1024 && h300 * 2 > s->len) { /* drop ticks every window has left */
        memmove(s->buf, s->buf + h300, (size_t)(s->len - h300) * sizeof(Tick));
        s->len -= h300;
        s->h300 = 0;
        s->h60 -= h300;
        s->h30 -= h300;
        s->h10 -= h300;
        s->h5 -= h300;
        s->h1 -= h300;
        fs_shrink(s);
    }
    s->ready = t >= s->start && (uint64_t)t - (uint64_t)s->start >= WARMUP_MS;

    if (v300 > 0.0) {
        double iv = 1.0 / sqrt(v300);
        out[0] = ret1 * iv * K1;
        out[1] = ret5 * iv * K5;
        out[2] = ret30 * iv * K30;
        out[3] = ret60 * iv * K60;
        out[5] = sqrt(LONG_PER_60 * s60) * iv;
        out[9] = sqrt(LONG_PER_5 * s5) * iv;
        out[10] = sqrt(LONG_PER_10 * s10) * iv;
        out[12] = amax / sqrt(v300 / LONG_S);
    } else {
        out[0] = out[1] = out[2] = out[3] = out[5] = out[9] = out[10] = out[12] = NAN;
    }
    if (s60 > 0.0) {
        double jump = 1.0 - HALF_PI * b60 / s60;
        out[11] = jump < 0.0 ? 0.0 : jump > 1.0 ? 1.0 : jump;
    } else {
        out[11] = NAN;
    }
    out[4] = s60 > 0.0 ? SQRT2 * sqrt(s30 / s60) : NAN;
    out[6] = LONG_PER_60 * (double)count60 / (double)count300;
    out[7] = z300 > 0.0 ? LONG_PER_60 * z60 / z300 : NAN;
    out[8] = has_bps && s300 > 0.0 ? bps * (double)q300 / s300 : NAN;
    out[13] = LONG_PER_10 * (double)count10 / (double)count300;
    out[14] = q10 > 0 && s300 > 0.0 ? p10 / (double)q10 / (s300 / (double)q300) : NAN;

    return 0;
}

/* update()'s arguments: (t_ms, price, size[, bid, ask]) from args[0..nargs). */
static int fs_args(PyObject* const* args, Py_ssize_t nargs, long long* t_ms, double* price,
                   double* size, double* bid, double* ask) {
    if (nargs < 3 || nargs > 5) {
        PyErr_SetString(PyExc_TypeError, "update(t_ms, price, size, bid=nan, ask=nan)");
        return -1;
    }
    *t_ms = PyLong_AsLongLong(args[0]);
    if (*t_ms == -1 && PyErr_Occurred()) return -1;
    *price = PyFloat_AsDouble(args[1]);
    if (*price == -1.0 && PyErr_Occurred()) return -1;
    *size = PyFloat_AsDouble(args[2]);
    if (*size == -1.0 && PyErr_Occurred()) return -1;
    *bid = *ask = NAN;
    if (nargs > 3 && ((*bid = PyFloat_AsDouble(args[3])) == -1.0 && PyErr_Occurred())) return -1;
    if (nargs > 4 && ((*ask = PyFloat_AsDouble(args[4])) == -1.0 && PyErr_Occurred())) return -1;
    return 0;
}

static PyObject* fs_update(FeatureState* s, PyObject* const* args, Py_ssize_t nargs,
                           PyObject* kwnames) {
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        PyErr_SetString(PyExc_TypeError, "update() takes positional arguments only");
        return NULL;
    }
    long long t_ms;
    double price, size, bid, ask, out[N_FEATURES];
    if (fs_args(args, nargs, &t_ms, &price, &size, &bid, &ask) < 0) return NULL;
    if (fs_step(s, t_ms, price, size, bid, ask, out) < 0) return NULL;
    PyObject* list = PyList_New(N_FEATURES);
    if (list == NULL) return NULL;
    for (int i = 0; i < N_FEATURES; i++) {
        PyObject* f = PyFloat_FromDouble(out[i]);
        if (f == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, f);
    }
    return list;
}

/* update_into(x, i, t_ms, price, size[, bid, ask]): update() with the features written
   as float32 into row i of x (a writable C-contiguous float32 buffer of rows of
   N_FEATURES), the cast numpy makes of update()'s list; returns None. */
static PyObject* fs_update_into(FeatureState* s, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 5) {
        PyErr_SetString(PyExc_TypeError, "update_into(x, i, t_ms, price, size, bid=nan, ask=nan)");
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[1]);
    if (i == -1 && PyErr_Occurred()) return NULL;
    long long t_ms;
    double price, size, bid, ask, out[N_FEATURES];
    if (fs_args(args + 2, nargs - 2, &t_ms, &price, &size, &bid, &ask) < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    int ok = view.itemsize == 4 && view.format != NULL && strcmp(view.format, "f") == 0 &&
             i >= 0 && (i + 1) * N_FEATURES * 4 <= view.len;
    if (!ok) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "update_into: x must be float32 rows of the features, i a row of it");
        return NULL;
    }
    if (fs_step(s, t_ms, price, size, bid, ask, out) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    float* row = (float*)view.buf + i * N_FEATURES;
    for (int k = 0; k < N_FEATURES; k++) row[k] = (float)out[k];
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyMethodDef fs_methods[] = {
    {"update", (PyCFunction)(void (*)(void))fs_update, METH_FASTCALL | METH_KEYWORDS,
     "update(t_ms, price, size[, bid, ask]) -> the tick's features in FEATURE_NAMES order "
     "(positional arguments; bid and ask default to NaN); a tick older than the last one "
     "counts as arriving at the last time."},
    {"update_into", (PyCFunction)(void (*)(void))fs_update_into, METH_FASTCALL,
     "update_into(x, i, t_ms, price, size[, bid, ask]): update(), the features written as "
     "float32 into row i of x (rows of the features); returns None."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef fs_members[] = {
    {"ready", T_BOOL, offsetof(FeatureState, ready), READONLY,
     "The symbol has WARMUP_MS of unbroken history."},
    {"last_t", T_LONGLONG, offsetof(FeatureState, last_t), READONLY,
     "The symbol's clock: the latest event time it has seen (-2**62 before its first tick)."},
    {NULL, 0, 0, 0, NULL},
};

static PyObject* fs_held(FeatureState* s, void* closure) {
    (void)closure;
    return PyLong_FromSsize_t(s->len - s->h300);
}

static PyGetSetDef fs_getset[] = {
    {"held", (getter)fs_held, NULL, "Ticks held in the 300 s window.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject FeatureStateType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "market._featurestate.FeatureState",
    .tp_doc = "One symbol's rolling feature state (C port of market.features.PyFeatureState).",
    .tp_basicsize = sizeof(FeatureState),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = fs_new,
    .tp_init = (initproc)fs_init,
    .tp_getset = fs_getset,
    .tp_dealloc = (destructor)fs_dealloc,
    .tp_methods = fs_methods,
    .tp_members = fs_members,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_featurestate", "Streaming features in C.", -1, NULL,
};

PyMODINIT_FUNC PyInit__featurestate(void) {
    /* the constants as market/features.py computes them */
    K1 = 1.0 / sqrt(1000.0 / (double)LONG_MS);
    K5 = 1.0 / sqrt(5000.0 / (double)LONG_MS);
    K30 = 1.0 / sqrt(30000.0 / (double)LONG_MS);
    K60 = 1.0 / sqrt(60000.0 / (double)LONG_MS);
    SQRT2 = sqrt(2.0);
    HALF_PI = M_PI / 2.0;
    if (PyType_Ready(&FeatureStateType) < 0) return NULL;
    PyObject* m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&FeatureStateType);
    if (PyModule_AddObject(m, "FeatureState", (PyObject*)&FeatureStateType) < 0) {
        Py_DECREF(&FeatureStateType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
