"""Hostile requests and broken artifacts against both servers: a clear status naming
what was wrong, never a crash, a wrong answer or an on-demand load.

Proven by breaking the code: without the presence check in codec.decode_rows the
misspelled-name test fails on the Python server (OK, probability of zeros); without
check_elf / checkELF the truncated-library tests kill the server (SIGBUS); without the
name list bound the 1,000-name error reaches clients as RESOURCE_EXHAUSTED/INTERNAL;
with Get() loading on demand again the not-servable test sees a load in the log."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException

from market.features import FEATURE_NAMES
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from server.rollback import set_artifact
from tests.conftest import ServerProcess, artifact_dir

C = grpc.StatusCode
GOOD = dict.fromkeys(FEATURE_NAMES, 0.001)

W = len(FEATURE_NAMES)  # the serving schema's width


def error_of(fn, req) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        fn(req, timeout=10)
    return err.value


@pytest.mark.parametrize("wrong", ["RV_60S_REL", "prïce", ""])
def test_a_misspelled_feature_name_is_rejected_not_scored_as_zero(channel, wrong):
    feats = {wrong if k == "rv_60s_rel" else k: v for k, v in GOOD.items()}
    assert len(feats) == len(FEATURE_NAMES)
    err = error_of(
        pb_grpc.PredictorStub(channel).Predict, pb.PredictRequest(rows=[pb.Row(features=feats)])
    )
    assert err.code() == C.INVALID_ARGUMENT
    assert err.details() == (
        f"rows[0].features: unknown feature(s) '{wrong}'; "
        "missing feature(s) 'rv_60s_rel' (use NaN if unknown)"
    )


def test_error_details_are_bounded(channel, server):
    feats = {**GOOD, **{f"{'n' * 200}{i:04d}": 1.0 for i in range(1_000)}}
    err = error_of(
        pb_grpc.PredictorStub(channel).Predict, pb.PredictRequest(rows=[pb.Row(features=feats)])
    )
    assert err.code() == C.INVALID_ARGUMENT, err.details()[:200]
    assert len(err.details()) < 400
    assert err.details().endswith(f"'{'n' * 32}...' and 995 more")
    text = server.metrics_text()
    assert 'code="INVALID_ARGUMENT"' in text


# --- artifacts ------------------------------------------------------------------------


def fake_artifact(models: Path, name: str, edit=None, lib=None) -> Path:
    """A copy of xgb-v1 named ``name``; ``lib(bytes) -> bytes`` changes the library and
    ``edit(manifest)`` the manifest. The sha256 is recomputed, as an attacker would."""
    folder = models / name
    shutil.copytree(artifact_dir("xgb-v1"), folder)
    doc = json.loads((folder / "manifest.json").read_text())
    doc["name"] = name
    so = folder / "model.so"
    if lib is not None:
        so.write_bytes(lib(so.read_bytes()))
    if edit is not None:
        edit(doc, folder)
    target = (
        folder / doc["library"] if not Path(doc["library"]).is_absolute() else Path(doc["library"])
    )
    if target.exists():
        doc["library_sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(doc))
    return folder


def models_with(tmp_path: Path, *extra) -> Path:
    models = tmp_path / "models"
    shutil.copytree(artifact_dir("xgb-v2"), models / "xgb-v2")
    for name, kw in extra:
        fake_artifact(models, name, **kw)
    return models


def start(tmp_path, impl, models, config: str, wait=True) -> ServerProcess:
    srv = ServerProcess(tmp_path, impl=impl, env={"VOLSPIKE_MODELS_DIR": str(models)})
    tmp_path.mkdir(parents=True, exist_ok=True)
    srv.model_config.write_text(config)
    return srv.start(wait_serving=wait)


def x_rows() -> np.ndarray:
    return np.full((2, len(FEATURE_NAMES)), 0.001, np.float32)


def named_calls(srv: ServerProcess, name: str) -> tuple[grpc.RpcError, bool, str]:
    """Predict, KServe ModelReady and ModelMetadata naming ``name``; the active model
    must still answer afterwards."""
    with grpc.insecure_channel(srv.address) as ch:
        stub = pb_grpc.PredictorStub(ch)
        packed = pb.PackedRows(float32_le=x_rows().tobytes(), num_features=W)
        predict = error_of(stub.Predict, pb.PredictRequest(model=name, packed=packed))
        assert stub.Predict(pb.PredictRequest(packed=packed), timeout=5).artifact == "xgb-v2"
    kserve = tc.InferenceServerClient(url=srv.address)
    try:
        ready = kserve.is_model_ready(name)
        with pytest.raises(InferenceServerException) as meta:
            kserve.get_model_metadata(name)
    finally:
        kserve.close()
    return predict, ready, meta.value.status()


TRUNCATIONS = {"half": lambda b: b[: len(b) // 2], "4k": lambda b: b[:4096]}


@pytest.mark.parametrize("cut", sorted(TRUNCATIONS))
def test_a_truncated_servable_library_is_refused_and_the_server_lives(tmp_path, impl, cut):
    models = models_with(tmp_path, ("cut", {"lib": TRUNCATIONS[cut]}))
    srv = start(tmp_path, impl, models, 'artifact = "xgb-v2"\nservable = ["cut"]\n')
    try:
        predict, ready, meta = named_calls(srv, "cut")
        assert predict.code() == C.UNAVAILABLE
        assert "model 'cut' is servable but not loaded" in predict.details()
        assert "is not a loadable library" in predict.details()
        assert "truncated" in predict.details()
        assert ready is False and meta == "StatusCode.UNAVAILABLE"
        set_artifact(srv.model_config, "cut")  # an operator switches to it: refused
        srv.proc.send_signal(1)
        wait_failed_reload(srv)
        assert srv.health() == "SERVING" and srv.proc.poll() is None
    finally:
        assert srv.stop() == 0


def test_a_server_configured_with_a_truncated_library_starts_not_serving(tmp_path, impl):
    models = models_with(tmp_path, ("cut", {"lib": TRUNCATIONS["half"]}))
    srv = start(tmp_path, impl, models, 'artifact = "cut"\n', wait=False)
    try:
        srv.wait_health("NOT_SERVING")
        time.sleep(1.0)
        assert srv.proc.poll() is None, srv.log.read_text()
        assert srv.health() == "NOT_SERVING"
        set_artifact(srv.model_config, "xgb-v2")  # the fix: point it at a good artifact
        srv.wait_health("SERVING", timeout=15)
    finally:
        assert srv.stop() == 0


def test_a_name_that_is_not_servable_is_never_loaded(tmp_path, impl):
    models = models_with(tmp_path, ("other", {}), ("listed", {}))
    srv = start(tmp_path, impl, models, 'artifact = "xgb-v2"\nservable = ["listed"]\n')
    try:
        predict, ready, meta = named_calls(srv, "other")
        assert predict.code() == C.NOT_FOUND and meta == "StatusCode.NOT_FOUND"
        assert predict.details() == "model 'other' is not served; servable: ['listed', 'xgb-v2']"
        assert ready is False
        # never loaded: no series of any family names it (the split on a misspelt family
        # name this replaced searched the whole page by accident)
        assert 'artifact="other"' not in srv.metrics_text()
        with grpc.insecure_channel(srv.address) as ch:
            req = pb.PredictRequest(
                model="listed", packed=pb.PackedRows(float32_le=x_rows().tobytes(), num_features=W)
            )
            assert pb_grpc.PredictorStub(ch).Predict(req, timeout=5).artifact == "listed"
    finally:
        assert srv.stop() == 0


def wait_failed_reload(srv: ServerProcess, timeout: float = 10.0) -> None:
    """Until the server counts a failed reload (SIGHUP and the file watcher may both
    notice one edit, so the count is at least one)."""
    pattern = re.compile(r'^volspike_model_reloads_total\{result="failed"\} ([0-9.]+)$', re.M)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = pattern.search(srv.metrics_text())
        if m and float(m.group(1)) >= 1:
            return
        time.sleep(0.1)
    raise AssertionError("no failed reload was counted")


def _escape(kind):
    def edit(doc, folder):
        outside = folder.parent.parent / "elsewhere"
        outside.mkdir(exist_ok=True)
        shutil.copy(folder / "model.so", outside / "lib.so")
        if kind == "dotdot":
            doc["library"] = "../../elsewhere/lib.so"
        elif kind == "absolute":
            doc["library"] = str(outside / "lib.so")
        else:
            (folder / "link.so").symlink_to(outside / "lib.so")
            doc["library"] = "link.so"

    return edit


@pytest.mark.parametrize(
    "kind,why",
    [
        ("dotdot", "must be a relative path inside the folder"),
        ("absolute", "must be a relative path inside the folder"),
        ("symlink", "resolves outside the artifact folder"),
    ],
)
def test_a_manifest_cannot_point_outside_its_folder(tmp_path, impl, kind, why):
    models = models_with(tmp_path, ("esc", {"edit": _escape(kind)}))
    srv = start(tmp_path, impl, models, 'artifact = "xgb-v2"\nservable = ["esc"]\n')
    try:
        predict, ready, _ = named_calls(srv, "esc")
        assert predict.code() == C.UNAVAILABLE and why in predict.details(), predict.details()
        assert ready is False
    finally:
        assert srv.stop() == 0


def test_a_half_written_model_config_keeps_the_model_and_is_counted(tmp_path, impl):
    models = models_with(tmp_path)
    srv = start(tmp_path, impl, models, 'artifact = "xgb-v2"\n')
    try:
        srv.model_config.write_text('artifact = "xgb-')  # the editor died mid-write
        srv.proc.send_signal(1)
        wait_failed_reload(srv)
        assert srv.health() == "SERVING"
    finally:
        assert srv.stop() == 0


def test_defaults_do_not_depend_on_the_working_directory(tmp_path, impl):
    """A tired operator starts the server from their home directory, with no flags but the
    ports: it must find the models and the model config of its checkout. (Mutation: the
    native defaults back to "compiled_models" relative to the cwd: NOT_SERVING forever.)"""
    import os
    import subprocess
    import sys

    from tests.conftest import _STARTED, NATIVE_SERVER, ROOT

    srv = ServerProcess(tmp_path, impl=impl)
    args = ["--port", str(srv.port), "--metrics-port", str(srv.metrics_port)]
    cmd = (
        [str(NATIVE_SERVER), *args] if impl == "native" else [sys.executable, "-m", "server", *args]
    )
    srv.proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=srv.log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    _STARTED.append(srv.proc)
    try:
        srv.wait_health("SERVING", timeout=30)
    finally:
        assert srv.stop() == 0
