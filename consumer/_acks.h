/* The acknowledgement of a settled generation (consumer/outputs.py Outputs._acknowledge),
   included by _wire.c.

   acknowledge(groups, acks, failed) -> None: for every row (partition, offset, tick) of
   every list in groups whose partition is still in acks and whose (partition, offset) is
   not in failed, acks[partition].acked[offset] = tick.event_time_ms. */

static PyObject *s_acked, *s_event_time_ms;

#define ACKNOWLEDGE_DOC                                                                        \
    "acknowledge(groups, acks, failed) -> None: acks[p].acked[off] = tick.event_time_ms for "  \
    "every row (p, off, tick) of every group, unless p is no longer in acks or (p, off) is " \
    "in failed"

static PyObject *acknowledge(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyList_CheckExact(args[0]) || !PyDict_CheckExact(args[1]) ||
        !PyAnySet_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, ACKNOWLEDGE_DOC);
        return NULL;
    }
    PyObject *groups = args[0], *all_acks = args[1], *failed = args[2];
    int check_failed = PySet_GET_SIZE(failed) > 0;
    /* the last row's partition, its PartitionAcks and their acked dict (owned) */
    PyObject *last_p = NULL, *ours = NULL, *acked = NULL;
    for (Py_ssize_t g = 0; g < PyList_GET_SIZE(groups); g++) {
        PyObject *group = PyList_GET_ITEM(groups, g);
        if (!PyList_CheckExact(group)) {
            PyErr_SetString(PyExc_TypeError, "acknowledge: every group is a list of rows");
            goto error;
        }
        Py_INCREF(group);
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(group); k++) {
            PyObject *row = PyList_GET_ITEM(group, k);
            if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) != 3) {
                Py_DECREF(group);
                PyErr_SetString(PyExc_TypeError, "acknowledge: a row is (partition, offset, tick)");
                goto error;
            }
            Py_INCREF(row);
            PyObject *p = PyTuple_GET_ITEM(row, 0), *off = PyTuple_GET_ITEM(row, 1);
            if (p != last_p) {
                Py_CLEAR(acked);
                Py_CLEAR(ours);
                Py_XSETREF(last_p, Py_NewRef(p));
                PyObject *a = PyDict_GetItemWithError(all_acks, p);
                if (a == NULL && PyErr_Occurred())
                    goto row_error;
                if (a != NULL && a != Py_None)
                    ours = Py_NewRef(a);
            }
            if (ours == NULL) { /* the partition is no longer ours */
                Py_DECREF(row);
                continue;
            }
            if (check_failed) {
                PyObject *pair = PyTuple_Pack(2, p, off);
                int in = pair == NULL ? -1 : PySet_Contains(failed, pair);
                Py_XDECREF(pair);
                if (in < 0)
                    goto row_error;
                if (in) {
                    Py_DECREF(row);
                    continue;
                }
            }
            if (acked == NULL && (acked = PyObject_GetAttr(ours, s_acked)) == NULL)
                goto row_error; /* read once a row of the partition is to be acknowledged */
            PyObject *tk = PyTuple_GET_ITEM(row, 2), *t;
            if (tick_type != NULL && Py_IS_TYPE(tk, tick_type)) /* the Tick: field 1 */
                t = Py_NewRef(PyTuple_GET_ITEM(tk, 1));
            else if ((t = PyObject_GetAttr(tk, s_event_time_ms)) == NULL)
                goto row_error;
            int bad = PyDict_CheckExact(acked) ? PyDict_SetItem(acked, off, t)
                                               : PyObject_SetItem(acked, off, t);
            Py_DECREF(t);
            if (bad < 0)
                goto row_error;
            Py_DECREF(row);
            continue;
        row_error:
            Py_DECREF(row);
            Py_DECREF(group);
            goto error;
        }
        Py_DECREF(group);
    }
    Py_XDECREF(acked);
    Py_XDECREF(ours);
    Py_XDECREF(last_p);
    Py_RETURN_NONE;
error:
    Py_XDECREF(acked);
    Py_XDECREF(ours);
    Py_XDECREF(last_p);
    return NULL;
}
