/* The intake's loop over plain ticks (consumer/intake.py Intake.read), included by _wire.c.

   read_plain(msgs, i, now_ms, max_future_ms, old_ms, warm_until, acks, states, flood, x,
              meta, warming, order, backfill, backfill_header) -> int

   From msgs[i] on, does for each message exactly what Intake._one does for a plain tick
   (its offset tracked, its symbol's features written into row len(meta) of x, the row
   appended to meta or warming, 1 or 0 to order, (partition, offset) to backfill when it
   is old and carries the header) and returns the index of the first message it leaves to
   Python: an error, a partition still warming up, a partition no longer ours, a message
   decode() does not accept, a symbol without state yet, a flooded symbol. Every check
   comes before any change, so Python takes such a message from the start; an exception
   raised by a check is cleared and the message left to Python too, which raises it with
   its own side effects. Objects that run Python code (a message's methods, a state's
   attributes) are held while used: such code may drop them from the lists and dicts. */

static PyObject *s_error, *s_partition, *s_offset, *s_value, *s_headers, *s_track,
    *s_update_into, *s_held, *s_ready;

static int intern_names(void) {
    struct {
        PyObject **var;
        const char *name;
    } names[] = {
        {&s_error, "error"},         {&s_partition, "partition"}, {&s_offset, "offset"},
        {&s_value, "value"},         {&s_headers, "headers"},     {&s_track, "track"},
        {&s_update_into, "update_into"},
        {&s_held, "held"},           {&s_ready, "ready"},
    };
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if ((*names[k].var = PyUnicode_InternFromString(names[k].name)) == NULL)
            return -1;
    return 0;
}

#define READ_PLAIN_DOC                                                                         \
    "read_plain(msgs, i, now_ms, max_future_ms, old_ms, warm_until, acks, states, flood, x, "  \
    "meta, warming, order, backfill, backfill_header) -> int: Intake._one for every plain "    \
    "tick from msgs[i] on; the index of the first message Python must take"

/* One plain tick's checks; 1: plain (tick, st and acks set, new references), 0: Python's
   to take, -1: a Python error. */
static int plain(PyObject *m, PyObject *p, long long now_ms, long long future_ms,
                 PyObject *warm_until, PyObject *all_acks, PyObject *states, PyObject *flood,
                 PyObject **tick, PyObject **st, PyObject **acks) {
    if (PyDict_GET_SIZE(warm_until)) {
        if (PyDict_GetItemWithError(warm_until, p) != NULL)
            return 0;
        if (PyErr_Occurred())
            return -1;
    }
    PyObject *a = PyDict_GetItemWithError(all_acks, p);
    if (a == NULL || a == Py_None)
        return PyErr_Occurred() ? -1 : 0;
    Py_INCREF(a); /* owned: value() and the lookups below may run Python code */
    PyObject *raw = PyObject_CallMethodNoArgs(m, s_value);
    if (raw == NULL) {
        Py_DECREF(a);
        return -1;
    }
    PyObject *t = decode_raw(raw, now_ms, future_ms);
    Py_DECREF(raw);
    if (t == NULL || t == Py_None) {
        Py_DECREF(a);
        if (t == NULL)
            return -1;
        Py_DECREF(t);
        return 0;
    }
    PyObject *key = PyTuple_Pack(2, p, PyTuple_GET_ITEM(t, 0));
    if (key == NULL) {
        Py_DECREF(t);
        Py_DECREF(a);
        return -1;
    }
    PyObject *s = PyDict_GetItemWithError(states, key);
    Py_DECREF(key);
    if (s == NULL || s == Py_None) {
        Py_DECREF(t);
        Py_DECREF(a);
        return PyErr_Occurred() ? -1 : 0;
    }
    Py_INCREF(s); /* owned: held and the comparison may run Python code */
    PyObject *held = PyObject_GetAttr(s, s_held);
    int full = held == NULL ? -1 : PyObject_RichCompareBool(held, flood, Py_GE);
    Py_XDECREF(held);
    if (full != 0) {
        Py_DECREF(t);
        Py_DECREF(s);
        Py_DECREF(a);
        return full < 0 ? -1 : 0;
    }
    *tick = t, *st = s, *acks = a;
    return 1;
}

/* The changes Intake._one makes for a plain tick, in its order; 0, or -1 on an error. */
static int has_header(PyObject *m, PyObject *header);

static int take(PyObject *m, PyObject *header, long long old_ms, PyObject *p, PyObject *off,
                PyObject *tick, PyObject *st, PyObject *acks, PyObject *x, PyObject *meta,
                PyObject *warming, PyObject *order, PyObject *backfill) {
    PyObject *r = PyObject_CallMethodOneArg(acks, s_track, off); /* acks.track(off) */
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    PyObject *row = PyLong_FromSsize_t(PyList_GET_SIZE(meta));
    if (row == NULL)
        return -1;
    PyObject *call[8] = {st,
                         x,
                         row,
                         PyTuple_GET_ITEM(tick, 1),
                         PyTuple_GET_ITEM(tick, 2),
                         PyTuple_GET_ITEM(tick, 3),
                         PyTuple_GET_ITEM(tick, 4),
                         PyTuple_GET_ITEM(tick, 5)};
    r = PyObject_VectorcallMethod(s_update_into, call, 8, NULL);
    Py_DECREF(row);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    int is_backfill = PyLong_AsLongLong(PyTuple_GET_ITEM(tick, 1)) < old_ms ? has_header(m, header) : 0;
    if (is_backfill < 0)
        return -1;
    if (is_backfill) {
        PyObject *pair = PyTuple_Pack(2, p, off);
        int bad = pair == NULL || PySet_Add(backfill, pair) < 0;
        Py_XDECREF(pair);
        if (bad)
            return -1;
    }
    PyObject *ready = PyObject_GetAttr(st, s_ready);
    int rd = ready == NULL ? -1 : PyObject_IsTrue(ready);
    Py_XDECREF(ready);
    if (rd < 0)
        return -1;
    PyObject *item = PyTuple_Pack(3, p, off, tick);
    if (item == NULL)
        return -1;
    int bad = PyList_Append(rd ? meta : warming, item);
    Py_DECREF(item);
    if (bad)
        return -1;
    Py_ssize_t k = PyByteArray_GET_SIZE(order);
    if (PyByteArray_Resize(order, k + 1) < 0)
        return -1;
    PyByteArray_AS_STRING(order)[k] = (char)rd;
    return 0;
}

/* Is this old tick's header list holding the backfill header? 1, 0, or -1 on an error. */
static int has_header(PyObject *m, PyObject *header) {
    PyObject *headers = PyObject_CallMethodNoArgs(m, s_headers);
    if (headers == NULL)
        return -1;
    int found = PyObject_IsTrue(headers); /* `m.headers() or ()` */
    if (found > 0)
        found = PySequence_Contains(headers, header);
    Py_DECREF(headers);
    return found;
}

static PyObject *read_plain(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 15) {
        PyErr_SetString(PyExc_TypeError, READ_PLAIN_DOC);
        return NULL;
    }
    if (tick_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    PyObject *msgs = args[0], *warm_until = args[5], *all_acks = args[6], *states = args[7];
    PyObject *flood = args[8], *x = args[9], *meta = args[10], *warming = args[11];
    PyObject *order = args[12], *backfill = args[13], *header = args[14];
    if (!PyList_CheckExact(msgs) || !PyDict_CheckExact(warm_until) || !PyDict_CheckExact(all_acks) ||
        !PyDict_CheckExact(states) || !PyList_CheckExact(meta) || !PyList_CheckExact(warming) ||
        !PyByteArray_CheckExact(order) || !PySet_CheckExact(backfill)) {
        PyErr_SetString(PyExc_TypeError, READ_PLAIN_DOC);
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[1]);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    long long now_ms, future_ms;
    if (!clock_args(args[2], args[3], &now_ms, &future_ms))
        return PyLong_FromSsize_t(i); /* odd clock arguments: every message Python's */
    long long old_ms = PyLong_AsLongLong(args[4]);
    if (old_ms == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return PyLong_FromSsize_t(i); /* an odd old_ms: every message Python's */
    }
    for (; i >= 0 && i < PyList_GET_SIZE(msgs); i++) {
        PyObject *m = Py_NewRef(PyList_GET_ITEM(msgs, i)); /* owned: its methods run code */
        PyObject *err = PyObject_CallMethodNoArgs(m, s_error);
        if (err == NULL) {
            Py_DECREF(m);
            return NULL;
        }
        int errored = err != Py_None;
        Py_DECREF(err);
        if (errored) {
            Py_DECREF(m);
            break;
        }
        PyObject *p = PyObject_CallMethodNoArgs(m, s_partition);
        PyObject *off = p == NULL ? NULL : PyObject_CallMethodNoArgs(m, s_offset);
        PyObject *tick = NULL, *st = NULL, *acks = NULL;
        int ok = -1;
        if (off != NULL)
            ok = p == Py_None || off == Py_None
                     ? 0
                     : plain(m, p, now_ms, future_ms, warm_until, all_acks, states, flood, &tick,
                             &st, &acks);
        if (ok < 0 && p != NULL && off != NULL && PyErr_ExceptionMatches(PyExc_Exception)) {
            PyErr_Clear(); /* nothing changed yet: Python's _one raises it with its effects */
            ok = 0;
        }
        if (ok == 1)
            ok = take(m, header, old_ms, p, off, tick, st, acks, x, meta, warming, order,
                      backfill) < 0 ? -1 : 1;
        Py_DECREF(m);
        Py_XDECREF(p);
        Py_XDECREF(off);
        Py_XDECREF(tick);
        Py_XDECREF(st);
        Py_XDECREF(acks);
        if (ok < 0)
            return NULL;
        if (ok == 0)
            break;
    }
    return PyLong_FromSsize_t(i);
}
