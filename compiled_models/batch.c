/* Batch entry point compiled together with TL2cgen's generated code.
 *
 * One call predicts a whole row-major float32 batch: no Python per row, no shared
 * mutable state (each call has its own Entry buffer on the stack), so any number of
 * threads may call it at once. Callers: the Python server through _fastcall.c (which
 * releases the GIL around the call) and the native server through cgo.
 *
 * Rows in blocks of 64 go through forest_simd.c's AVX-512 layout when the ensemble fits
 * it and the CPU has AVX-512F; the rest (and every row elsewhere) through TL2cgen's
 * code. Both give bit-identical answers (tests/test_simd_kernel.py).
 */
#include <math.h>
#include <stdint.h>
#include "header.h"

#define VS_MAX_FEATURES 4096

int32_t vs_num_feature(void) { return get_num_feature(); }

int32_t vs_simd_active(void);
int64_t vs_simd_predict(const float* x, int64_t nrow, float* out, int64_t* done);

/* TL2cgen's code for every row: what vs_predict_batch answers without AVX-512. */
int64_t vs_predict_batch_portable(const float* x, int64_t nrow, float* out);

/* Returns -1 on success, or the index of the first row holding +-inf (nothing is
 * trusted after such a row: the caller must reject the request). NaN means missing. */
int64_t vs_predict_batch(const float* x, int64_t nrow, float* out) {
  int64_t done = 0;
  if (vs_simd_active()) {
    const int64_t bad = vs_simd_predict(x, nrow, out, &done);
    if (bad >= 0) return bad;
  }
  const int64_t bad = vs_predict_batch_portable(x + done * get_num_feature(), nrow - done, out + done);
  return bad < 0 ? bad : bad + done;
}

int64_t vs_predict_batch_portable(const float* x, int64_t nrow, float* out) {
  const int32_t nf = get_num_feature();
  union Entry row[VS_MAX_FEATURES];
  for (int64_t i = 0; i < nrow; ++i) {
    const float* xi = x + i * nf;
    for (int32_t j = 0; j < nf; ++j) {
      const float v = xi[j];
      if (isnan(v)) {
        row[j].missing = -1;
      } else if (isinf(v)) {
        return i;
      } else {
        row[j].fvalue = v;
      }
    }
    float result = 0.0f;
    predict(row, 0, &result);
    out[i] = result;
  }
  return -1;
}
