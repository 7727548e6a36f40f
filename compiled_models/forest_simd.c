/* A batch layout for depth <= 6 ensembles, walked 16 rows at a time with AVX-512.
 *
 * Compiled into the same library as TL2cgen's code (compile.py) when the ensemble fits
 * (simd_layout.py decides and writes forest_tables.h). Each tree is padded to a perfect
 * depth-6 tree; a row block is stored feature-major; per tree, levels 0-2 read whole
 * columns and blend, levels 3-5 gather, node thresholds come from in-register
 * permutes, leaves from four permutes. Missing values: every column is stored twice,
 * NaN as +inf (for nodes sending missing right) and as -inf (missing left); padding
 * nodes test a constant 0 column against +inf (always left). The arithmetic is
 * TL2cgen's, step for step (float sum, each leaf added as TL2cgen's double literal, the
 * base margin, then expf), so every row's answer is bit-identical whichever path runs:
 * tests/test_simd_kernel.py compares them on every held-out row.
 */
#include <math.h>
#include <stdint.h>

#include "forest_tables.h"

#if VS_SIMD_TABLES
#include <immintrin.h>

#define W (2 * NF + 1) /* columns: NaN->+inf copy, NaN->-inf copy, constant 0 */
#define V 4            /* vectors of 16 rows walked together per tree */
#define B (16 * V)     /* rows per block */
#define MIN_PADDED 24  /* a last partial block of fewer rows goes to TL2cgen's code */

#define VS_TARGET __attribute__((target("avx512f")))

VS_TARGET static inline __m512i vs_step(__m512i pos, __m512 x, __m512 th) {
  const __mmask16 right = _mm512_cmp_ps_mask(x, th, _CMP_GE_OQ);
  const __m512i p2 = _mm512_add_epi32(pos, pos);
  return _mm512_mask_add_epi32(p2, right, p2, _mm512_set1_epi32(1));
}

VS_TARGET static inline __m512d vs_leaf8(__m256i idx, const double* lf) {
  const __m512i i = _mm512_cvtepi32_epi64(idx);
  const __m512d a = _mm512_permutex2var_pd(_mm512_load_pd(lf), i, _mm512_load_pd(lf + 8));
  const __m512d b = _mm512_permutex2var_pd(_mm512_load_pd(lf + 16), i, _mm512_load_pd(lf + 24));
  const __m512d c = _mm512_permutex2var_pd(_mm512_load_pd(lf + 32), i, _mm512_load_pd(lf + 40));
  const __m512d d = _mm512_permutex2var_pd(_mm512_load_pd(lf + 48), i, _mm512_load_pd(lf + 56));
  const __mmask8 b4 = _mm512_test_epi64_mask(i, _mm512_set1_epi64(16));
  const __mmask8 b5 = _mm512_test_epi64_mask(i, _mm512_set1_epi64(32));
  return _mm512_mask_blend_pd(b5, _mm512_mask_blend_pd(b4, a, b), _mm512_mask_blend_pd(b4, c, d));
}

/* acc (float) += leaf (double), rounded to float: TL2cgen's `result[0] += <literal>` */
VS_TARGET static inline __m512 vs_add_leaf(__m512 acc, __m512i pos, const double* lf) {
  const __m512d l0 = vs_leaf8(_mm512_castsi512_si256(pos), lf);
  const __m512d l1 = vs_leaf8(_mm512_extracti64x4_epi64(pos, 1), lf);
  const __m256 a0 = _mm512_castps512_ps256(acc);
  const __m256 a1 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1));
  const __m256 s0 = _mm512_cvtpd_ps(_mm512_add_pd(_mm512_cvtps_pd(a0), l0));
  const __m256 s1 = _mm512_cvtpd_ps(_mm512_add_pd(_mm512_cvtps_pd(a1), l1));
  return _mm512_castpd_ps(
      _mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(s0)), _mm256_castps_pd(s1), 1));
}

/* xt: W columns x B rows; acc: B sums of leaves */
VS_TARGET static void vs_block(const float* xt, float* acc) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i bvec = _mm512_set1_epi32(B);
  __m512i lanev[V];
  __m512 a[V];
  for (int v = 0; v < V; ++v) {
    lanev[v] = _mm512_add_epi32(lane, _mm512_set1_epi32(16 * v));
    a[v] = _mm512_setzero_ps();
  }
  for (int t = 0; t < NT; ++t) {
    const int32_t(*fe)[16] = VS_FEAT[t];
    const float(*th)[16] = VS_THR[t];
    __m512i pos[V];
    __mmask16 m0[V], m1[V];
    const float* c = xt + fe[0][0] * B; /* level 0: one column */
    const __m512 t0 = _mm512_set1_ps(th[0][0]);
    for (int v = 0; v < V; ++v) {
      m0[v] = _mm512_cmp_ps_mask(_mm512_load_ps(c + 16 * v), t0, _CMP_GE_OQ);
      pos[v] = _mm512_maskz_mov_epi32(m0[v], _mm512_set1_epi32(1));
    }
    const float* c10 = xt + fe[1][0] * B; /* level 1: two columns, one blend */
    const float* c11 = xt + fe[1][1] * B;
    const __m512 t10 = _mm512_set1_ps(th[1][0]), t11 = _mm512_set1_ps(th[1][1]);
    for (int v = 0; v < V; ++v) {
      const __m512 x =
          _mm512_mask_blend_ps(m0[v], _mm512_load_ps(c10 + 16 * v), _mm512_load_ps(c11 + 16 * v));
      m1[v] = _mm512_cmp_ps_mask(x, _mm512_mask_blend_ps(m0[v], t10, t11), _CMP_GE_OQ);
      const __m512i p2 = _mm512_add_epi32(pos[v], pos[v]);
      pos[v] = _mm512_mask_add_epi32(p2, m1[v], p2, _mm512_set1_epi32(1));
    }
    const float* c20 = xt + fe[2][0] * B; /* level 2: four columns, three blends */
    const float* c21 = xt + fe[2][1] * B;
    const float* c22 = xt + fe[2][2] * B;
    const float* c23 = xt + fe[2][3] * B;
    const __m512 t2 = _mm512_load_ps(th[2]);
    for (int v = 0; v < V; ++v) {
      const __m512 x01 =
          _mm512_mask_blend_ps(m1[v], _mm512_load_ps(c20 + 16 * v), _mm512_load_ps(c21 + 16 * v));
      const __m512 x23 =
          _mm512_mask_blend_ps(m1[v], _mm512_load_ps(c22 + 16 * v), _mm512_load_ps(c23 + 16 * v));
      const __m512 x = _mm512_mask_blend_ps(m0[v], x01, x23);
      pos[v] = vs_step(pos[v], x, _mm512_permutexvar_ps(pos[v], t2));
    }
    for (int d = 3; d < 5; ++d) { /* levels 3, 4: up to 16 nodes: permute + gather */
      const __m512i fl = _mm512_load_si512(fe[d]);
      const __m512 tl = _mm512_load_ps(th[d]);
      for (int v = 0; v < V; ++v) {
        const __m512i col = _mm512_permutexvar_epi32(pos[v], fl);
        const __m512i at = _mm512_add_epi32(_mm512_mullo_epi32(col, bvec), lanev[v]);
        pos[v] = vs_step(pos[v], _mm512_i32gather_ps(at, xt, 4), _mm512_permutexvar_ps(pos[v], tl));
      }
    }
    { /* level 5: 32 nodes: two-register permutes + gather */
      const __m512i fa = _mm512_load_si512(fe[5]), fb = _mm512_load_si512(fe[6]);
      const __m512 ta = _mm512_load_ps(th[5]), tb = _mm512_load_ps(th[6]);
      for (int v = 0; v < V; ++v) {
        const __m512i col = _mm512_permutex2var_epi32(fa, pos[v], fb);
        const __m512i at = _mm512_add_epi32(_mm512_mullo_epi32(col, bvec), lanev[v]);
        const __m512 thr = _mm512_permutex2var_ps(ta, pos[v], tb);
        pos[v] = vs_step(pos[v], _mm512_i32gather_ps(at, xt, 4), thr);
      }
    }
    for (int v = 0; v < V; ++v) a[v] = vs_add_leaf(a[v], pos[v], VS_LEAF[t]);
  }
  for (int v = 0; v < V; ++v) _mm512_storeu_ps(acc + 16 * v, a[v]);
}

int32_t vs_simd_active(void) {
  static int active = -1; /* -1: not asked yet; threads may race to ask, all get one answer */
  int a = __atomic_load_n(&active, __ATOMIC_RELAXED);
  if (a < 0) {
    __builtin_cpu_init();
    a = __builtin_cpu_supports("avx512f") ? 1 : 0;
    __atomic_store_n(&active, a, __ATOMIC_RELAXED);
  }
  return a;
}

int64_t vs_simd_predict(const float* x, int64_t nrow, float* out, int64_t* done) {
  float xt[W * B] __attribute__((aligned(64)));
  float acc[B];
  int64_t r0 = 0;
  for (; r0 < nrow; r0 += B) {
    const int64_t left = nrow - r0;
    if (left < MIN_PADDED) break;
    const int n = left < B ? (int)left : B;
    for (int r = 0; r < B; ++r) {
      const float* xi = r < n ? x + (r0 + r) * NF : 0; /* a short last block: zero rows */
      for (int j = 0; j < NF; ++j) {
        const float v = xi ? xi[j] : 0.0f;
        if (isinf(v)) return r0 + r;
        xt[j * B + r] = isnan(v) ? INFINITY : v;
        xt[(NF + j) * B + r] = isnan(v) ? -INFINITY : v;
      }
      xt[2 * NF * B + r] = 0.0f;
    }
    vs_block(xt, acc);
    for (int r = 0; r < n; ++r) {
      float m = acc[r];
      m += VS_BASE_MARGIN;
      out[r0 + r] = VS_POSTPROCESS(m);
    }
  }
  *done = r0 < nrow ? r0 : nrow;
  return -1;
}

#else /* the ensemble does not fit the layout: TL2cgen's code answers every row */

int32_t vs_simd_active(void) { return 0; }

int64_t vs_simd_predict(const float* x, int64_t nrow, float* out, int64_t* done) {
  (void)x, (void)nrow, (void)out;
  *done = 0;
  return -1;
}

#endif
