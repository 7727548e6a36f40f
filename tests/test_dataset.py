from __future__ import annotations

import numpy as np

from compiled_models import dataset


def test_split_is_time_ordered_with_embargo(real_dataset):
    ds = real_dataset
    tr, va, te = ds.train, ds.valid, ds.test
    assert tr.t_ms[-1] + dataset.HORIZON_MS < va.t_ms[0]
    assert va.t_ms[-1] + dataset.HORIZON_MS < te.t_ms[0]
    for s in (tr, va, te):
        assert np.all(np.diff(s.t_ms) >= 0)
        assert s.X.dtype == np.float32 and s.X.flags.c_contiguous


def test_label_threshold_comes_from_training_period(real_dataset):
    ds = real_dataset
    assert abs(ds.train.y.mean() - (1 - dataset.SPIKE_QUANTILE)) < 0.01
    assert 0.0 < ds.test.y.mean() < 0.5  # the held-out period has spikes, and fewer
    assert ds.n_ticks == 500_000
