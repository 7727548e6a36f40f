/* A minimal CPython entry point for calling an artifact's vs_predict_batch.
 *
 * ctypes spends ~2 us per call turning numpy arrays into pointers; the buffer protocol
 * does it in a fraction of that. The artifact stays plain C (no Python ABI in it): this
 * module only receives the function's address. The GIL is released during the call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef int64_t (*predict_fn)(const float*, int64_t, float*);

static PyObject* call(PyObject* self, PyObject* args) {
  unsigned long long fn;
  long long rows;
  Py_buffer x, out;
  if (!PyArg_ParseTuple(args, "KLy*w*", &fn, &rows, &x, &out)) return NULL;
  int64_t bad;
  Py_BEGIN_ALLOW_THREADS
  bad = ((predict_fn)(uintptr_t)fn)((const float*)x.buf, (int64_t)rows, (float*)out.buf);
  Py_END_ALLOW_THREADS
  PyBuffer_Release(&x);
  PyBuffer_Release(&out);
  return PyLong_FromLongLong(bad);
}

static PyMethodDef methods[] = {
    {"call", call, METH_VARARGS, "call(fn_address, rows, x_buffer, out_buffer) -> int"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastcall", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastcall(void) { return PyModule_Create(&module); }
