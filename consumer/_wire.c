/* The consumer's fast path for its wire format in (consumer/messages.py decode_tick).
   (Writing predictions in C was tried: snprintf and repr's float formatting made it
   slower than orjson, 1.09 vs 0.94 us a record.)

   decode(raw, now_ms, max_future_ms) returns the Tick when the message is a plain, valid
   tick, and None for anything else: then decode_tick's Python path parses it again and
   gives the answer (the tick, or BadTick with its reason). So this file never decides
   that a tick is bad, and every message it accepts is one the Python path accepts with
   the same values (tests/test_decode_fast.py compares the two on generated and hostile
   messages).

   Accepted: a JSON object (whitespace as JSON allows it) whose keys and string values are
   ASCII without escapes and whose values are strings, numbers, null, true or false (an
   object or array value anywhere: None); no known key twice; the known fields valid by
   decode_tick's rules (bounds passed in by configure()). Numbers follow the JSON grammar;
   an integer literal is an int (at most 18 digits here), anything with a fraction or an
   exponent a double (strtod, correctly rounded, as orjson).

   Two loops of the consumer's per-tick work live here too, each beside the Python it
   replaces and tested against it: read_plain (_intake.h, consumer/intake.py's loop over
   plain ticks; tests/test_intake_plain.py) and acknowledge (_acks.h, a settled
   generation's acknowledgements; tests/test_acknowledge.py). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static PyTypeObject *tick_type;
static long long min_time_ms;
static Py_ssize_t max_message_bytes;
static double min_price, max_price, max_size;

typedef struct {
    const char *p, *end;
} cur;

static inline void skip_ws(cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* A string without escapes, printable ASCII only; *s, *n its content. 0 if not. */
static int read_string(cur *c, const char **s, Py_ssize_t *n) {
    if (c->p >= c->end || *c->p != '"')
        return 0;
    const char *start = ++c->p;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            *s = start;
            *n = c->p - start;
            c->p++;
            return 1;
        }
        if (ch < 0x20 || ch >= 0x80 || ch == '\\')
            return 0;
        c->p++;
    }
    return 0;
}

enum { NUM_NONE = 0, NUM_INT = 1, NUM_FLOAT = 2 };

static const double pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Clinger's fast path for a grammatical JSON number in [s, e): when its digits make an
   integer m <= 2^53 and its decimal exponent k is within +-22, m and 10^|k| are exact
   doubles and one IEEE multiply or divide rounds correctly, as strtod does. 0 otherwise. */
static int fast_double(const char *s, const char *e, double *out) {
    int neg = *s == '-';
    const char *q = s + neg;
    unsigned long long m = 0;
    int digits = 0, k = 0;
    for (; q < e && ((*q >= '0' && *q <= '9') || *q == '.'); q++) {
        if (*q == '.') {
            for (q++; q < e && *q >= '0' && *q <= '9'; q++, k--) {
                if (m == 0 && *q == '0')
                    continue; /* leading zeros of the fraction carry no digit */
                if (++digits > 16)
                    return 0;
                m = m * 10 + (unsigned long long)(*q - '0');
            }
            break;
        }
        if (m == 0 && *q == '0')
            continue;
        if (++digits > 16)
            return 0;
        m = m * 10 + (unsigned long long)(*q - '0');
    }
    if (q < e) { /* the exponent */
        q++;
        int eneg = 0, ex = 0, edigits = 0;
        if (*q == '+' || *q == '-')
            eneg = *q++ == '-';
        for (; q < e; q++) {
            if (++edigits > 4)
                return 0;
            ex = ex * 10 + (*q - '0');
        }
        k += eneg ? -ex : ex;
    }
    if (m > (1ULL << 53) || k < -22 || k > 22)
        return 0;
    double v = (double)m;
    v = k < 0 ? v / pow10[-k] : v * pow10[k];
    *out = neg ? -v : v;
    return 1;
}

/* A JSON number: NUM_INT (*i) for an integer literal of at most 18 digits, NUM_FLOAT (*d,
   finite, no range error) for one with a fraction or exponent, NUM_NONE otherwise. */
static int read_number(cur *c, long long *i, double *d) {
    const char *start = c->p, *q = c->p;
    int neg = 0, is_float = 0;
    if (q < c->end && *q == '-') {
        neg = 1;
        q++;
    }
    if (q >= c->end || *q < '0' || *q > '9')
        return NUM_NONE;
    const char *digits = q;
    if (*q == '0') {
        q++;
    } else {
        while (q < c->end && *q >= '0' && *q <= '9')
            q++;
    }
    Py_ssize_t ndigits = q - digits;
    if (q < c->end && *q == '.') {
        is_float = 1;
        q++;
        const char *f = q;
        while (q < c->end && *q >= '0' && *q <= '9')
            q++;
        if (q == f)
            return NUM_NONE;
    }
    if (q < c->end && (*q == 'e' || *q == 'E')) {
        is_float = 1;
        q++;
        if (q < c->end && (*q == '+' || *q == '-'))
            q++;
        const char *e = q;
        while (q < c->end && *q >= '0' && *q <= '9')
            q++;
        if (q == e)
            return NUM_NONE;
    }
    c->p = q;
    if (is_float && fast_double(start, q, d))
        return NUM_FLOAT;
    if (!is_float) {
        if (ndigits > 18)
            return NUM_NONE;
        long long v = 0;
        for (const char *k = digits; k < digits + ndigits; k++)
            v = v * 10 + (*k - '0');
        *i = neg ? -v : v;
        return NUM_INT;
    }
    char buf[64];
    Py_ssize_t len = q - start;
    if (len >= (Py_ssize_t)sizeof buf)
        return NUM_NONE;
    memcpy(buf, start, len);
    buf[len] = '\0';
    errno = 0;
    char *stop;
    double v = strtod(buf, &stop);
    if (errno != 0 || stop != buf + len || !isfinite(v))
        return NUM_NONE;
    *d = v;
    return NUM_FLOAT;
}

static int literal(cur *c, const char *word, Py_ssize_t n) {
    if (c->end - c->p < n || memcmp(c->p, word, n) != 0)
        return 0;
    c->p += n;
    return 1;
}

enum { F_SYMBOL, F_TIME, F_PRICE, F_SIZE, F_BID, F_ASK, F_OTHER };

static int field_of(const char *s, Py_ssize_t n) {
    switch (n) {
    case 6:
        return memcmp(s, "symbol", 6) == 0 ? F_SYMBOL : F_OTHER;
    case 13:
        return memcmp(s, "event_time_ms", 13) == 0 ? F_TIME : F_OTHER;
    case 5:
        return memcmp(s, "price", 5) == 0 ? F_PRICE : F_OTHER;
    case 4:
        return memcmp(s, "size", 4) == 0 ? F_SIZE : F_OTHER;
    case 3:
        return memcmp(s, "bid", 3) == 0 ? F_BID : (memcmp(s, "ask", 3) == 0 ? F_ASK : F_OTHER);
    default:
        return F_OTHER;
    }
}

/* 1 and the tick's fields when the message is a plain valid tick; 0 otherwise. */
static int parse(const char *data, Py_ssize_t size, long long now_ms, long long max_future_ms,
                 const char **sym, Py_ssize_t *sym_n, long long *t, double v[4]) {
    cur c = {data, data + size};
    int seen[F_OTHER] = {0};
    int has_number[F_OTHER] = {0};
    v[0] = v[1] = v[2] = v[3] = NAN; /* price, size, bid, ask */
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{')
        return 0;
    c.p++;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}')
        return 0; /* no fields: Python names the missing one */
    for (;;) {
        const char *k;
        Py_ssize_t kn;
        skip_ws(&c);
        if (!read_string(&c, &k, &kn))
            return 0;
        skip_ws(&c);
        if (c.p >= c.end || *c.p != ':')
            return 0;
        c.p++;
        skip_ws(&c);
        if (c.p >= c.end)
            return 0;
        int f = field_of(k, kn);
        if (f != F_OTHER) {
            if (seen[f])
                return 0; /* the last one wins in Python: leave it to Python */
            seen[f] = 1;
        }
        char ch = *c.p;
        if (ch == '"') {
            const char *s;
            Py_ssize_t n;
            if (!read_string(&c, &s, &n))
                return 0;
            if (f == F_SYMBOL) {
                *sym = s;
                *sym_n = n;
            } else if (f != F_OTHER) {
                return 0; /* a string where a number belongs */
            }
        } else if (ch == 'n') {
            if (!literal(&c, "null", 4))
                return 0;
            if (f != F_OTHER && f != F_BID && f != F_ASK)
                return 0; /* symbol, event_time_ms, price, size may not be null */
        } else if (ch == 't' || ch == 'f') {
            if (!(ch == 't' ? literal(&c, "true", 4) : literal(&c, "false", 5)))
                return 0;
            if (f != F_OTHER)
                return 0; /* a bool is not a number */
        } else if (ch == '-' || (ch >= '0' && ch <= '9')) {
            long long iv = 0;
            double dv = 0.0;
            int kind = read_number(&c, &iv, &dv);
            if (kind == NUM_NONE)
                return 0;
            if (f == F_SYMBOL)
                return 0;
            if (f == F_TIME) {
                if (kind != NUM_INT)
                    return 0;
                *t = iv;
            } else if (f != F_OTHER) {
                v[f - F_PRICE] = kind == NUM_INT ? (double)iv : dv;
                has_number[f] = 1;
            }
        } else {
            return 0; /* an object or an array, or not JSON */
        }
        skip_ws(&c);
        if (c.p >= c.end)
            return 0;
        if (*c.p == ',') {
            c.p++;
            continue;
        }
        if (*c.p == '}') {
            c.p++;
            break;
        }
        return 0;
    }
    skip_ws(&c);
    if (c.p != c.end)
        return 0;
    /* decode_tick's rules, in its order; any failure is Python's to word */
    if (!seen[F_SYMBOL] || *sym_n < 1 || *sym_n > 32)
        return 0;
    if (!seen[F_TIME] || *t < min_time_ms || *t > now_ms + max_future_ms)
        return 0;
    if (!has_number[F_PRICE] || !has_number[F_SIZE])
        return 0;
    double price = v[0], qty = v[1], bid = v[2], ask = v[3];
    if (!(min_price <= price && price <= max_price))
        return 0;
    if (!(0 <= qty && qty <= max_size))
        return 0;
    if (!isnan(bid) && !(min_price <= bid && bid <= max_price))
        return 0;
    if (!isnan(ask) && !(min_price <= ask && ask <= max_price))
        return 0;
    if (bid > ask)
        return 0;
    return 1;
}

/* The tick of a plain valid message (a new reference), Py_None (new reference) for
   anything Python must judge, NULL on a Python error. */
static PyObject *decode_raw(PyObject *raw, long long now_ms, long long max_future_ms) {
    if (!PyBytes_CheckExact(raw))
        Py_RETURN_NONE;
    Py_ssize_t size = PyBytes_GET_SIZE(raw);
    if (size > max_message_bytes || max_future_ms < 0 || max_future_ms > (1LL << 40) || now_ms < 0 ||
        now_ms > (1LL << 60))
        Py_RETURN_NONE;
    const char *sym = NULL;
    Py_ssize_t sym_n = 0;
    long long t = 0;
    double v[4];
    if (!parse(PyBytes_AS_STRING(raw), size, now_ms, max_future_ms, &sym, &sym_n, &t, v))
        Py_RETURN_NONE;
    PyObject *tick = tick_type->tp_alloc(tick_type, 6);
    if (tick == NULL)
        return NULL;
    PyObject *items[6] = {
        PyUnicode_DecodeASCII(sym, sym_n, NULL), PyLong_FromLongLong(t),
        PyFloat_FromDouble(v[0]),                PyFloat_FromDouble(v[1]),
        PyFloat_FromDouble(v[2]),                PyFloat_FromDouble(v[3]),
    };
    for (int k = 0; k < 6; k++) {
        if (items[k] == NULL) {
            for (int j = 0; j < 6; j++)
                Py_XDECREF(items[j]);
            Py_DECREF(tick);
            return NULL;
        }
    }
    for (int k = 0; k < 6; k++)
        PyTuple_SET_ITEM(tick, k, items[k]);
    return tick;
}

/* The clock arguments as C integers; 0 when Python must judge (not ints, beyond 64 bits). */
static int clock_args(PyObject *now, PyObject *future, long long *now_ms, long long *future_ms) {
    if (!PyLong_CheckExact(now) || !PyLong_CheckExact(future))
        return 0;
    *now_ms = PyLong_AsLongLong(now);
    *future_ms = PyLong_AsLongLong(future);
    if ((*now_ms == -1 || *future_ms == -1) && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

static PyObject *decode(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "decode(raw, now_ms, max_future_ms)");
        return NULL;
    }
    if (tick_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    long long now_ms, max_future_ms;
    if (!clock_args(args[1], args[2], &now_ms, &max_future_ms))
        Py_RETURN_NONE; /* odd clock arguments: Python's to judge */
    return decode_raw(args[0], now_ms, max_future_ms);
}

#include "_intake.h"
#include "_acks.h"

static PyObject *configure(PyObject *self, PyObject *args) {
    PyObject *cls;
    long long mt;
    Py_ssize_t mb;
    double lo, hi, ms;
    if (!PyArg_ParseTuple(args, "OLnddd", &cls, &mt, &mb, &lo, &hi, &ms))
        return NULL;
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type) ||
        ((PyTypeObject *)cls)->tp_basicsize != PyTuple_Type.tp_basicsize) {
        PyErr_SetString(PyExc_TypeError, "the tick type must be a NamedTuple of six fields");
        return NULL;
    }
    Py_INCREF(cls);
    Py_XSETREF(tick_type, (PyTypeObject *)cls);
    min_time_ms = mt;
    max_message_bytes = mb;
    min_price = lo;
    max_price = hi;
    max_size = ms;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {

    {"decode", (PyCFunction)(void (*)(void))decode, METH_FASTCALL,
     "decode(raw, now_ms, max_future_ms) -> Tick | None: the tick of a plain valid message, "
     "None for anything decode_tick's Python path must judge"},
    {"configure", configure, METH_VARARGS,
     "configure(tick_type, min_time_ms, max_message_bytes, min_price, max_price, max_size)"},
    {"read_plain", (PyCFunction)(void (*)(void))read_plain, METH_FASTCALL, READ_PLAIN_DOC},
    {"acknowledge", (PyCFunction)(void (*)(void))acknowledge, METH_FASTCALL, ACKNOWLEDGE_DOC},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_wire", NULL, -1, methods};

PyMODINIT_FUNC PyInit__wire(void) {
    if (intern_names() < 0 || (s_acked = PyUnicode_InternFromString("acked")) == NULL ||
        (s_event_time_ms = PyUnicode_InternFromString("event_time_ms")) == NULL)
        return NULL;
    return PyModule_Create(&module);
}
