/* The acknowledgement of a settled generation (consumer/outputs.py Outputs._acknowledge),
   included by _wire.c.

   acknowledge(groups, acks, failed) -> None: for every row (partition, offset, tick) of
   every list in groups whose partition is still in acks and whose (partition, offset) is
   not in failed, acks[partition].acked[offset] = tick.event_time_ms. */

static PyObject *s_acked;

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
    PyObject *last_p = NULL, *acked = NULL; /* the last row's partition and its dict */
    for (Py_ssize_t g = 0; g < PyList_GET_SIZE(groups); g++) {
        PyObject *group = PyList_GET_ITEM(groups, g);
        if (!PyList_CheckExact(group)) {
            PyErr_SetString(PyExc_TypeError, "acknowledge: every group is a list of rows");
            goto error;
        }
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(group); k++) {
            PyObject *row = PyList_GET_ITEM(group, k);
            if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) != 3 ||
                !PyTuple_Check(PyTuple_GET_ITEM(row, 2)) ||
                PyTuple_GET_SIZE(PyTuple_GET_ITEM(row, 2)) < 2) {
                PyErr_SetString(PyExc_TypeError, "acknowledge: a row is (partition, offset, tick)");
                goto error;
            }
            PyObject *p = PyTuple_GET_ITEM(row, 0), *off = PyTuple_GET_ITEM(row, 1);
            if (p != last_p) {
                Py_CLEAR(acked);
                last_p = p;
                PyObject *a = PyDict_GetItemWithError(all_acks, p);
                if (a == NULL && PyErr_Occurred())
                    goto error;
                if (a != NULL && (acked = PyObject_GetAttr(a, s_acked)) == NULL)
                    goto error;
            }
            if (acked == NULL) /* the partition is no longer ours */
                continue;
            if (check_failed) {
                PyObject *pair = PyTuple_Pack(2, p, off);
                int in = pair == NULL ? -1 : PySet_Contains(failed, pair);
                Py_XDECREF(pair);
                if (in < 0)
                    goto error;
                if (in)
                    continue;
            }
            if (PyDict_SetItem(acked, off, PyTuple_GET_ITEM(PyTuple_GET_ITEM(row, 2), 1)) < 0)
                goto error;
        }
    }
    Py_XDECREF(acked);
    Py_RETURN_NONE;
error:
    Py_XDECREF(acked);
    return NULL;
}
