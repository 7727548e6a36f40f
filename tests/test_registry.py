"""Which artifact a call means (ModelRegistry.resolve, proto/contract.toml errors): the
served model name (config ``model_name``, default "volspike") or no name is the active
artifact, or the servable one its version pins; an artifact's own name answers as before,
and a version other than that name is not served.

Mutation (seen failing): let resolve ignore ``version`` for the model name and
test_a_version_pins_a_servable_artifact fails."""

from __future__ import annotations

import grpc
import pytest
from prometheus_client import CollectorRegistry

from server.config import read_model_config
from server.errors import ServiceError
from server.metrics import ServerMetrics
from server.registry import ModelRegistry
from tests.conftest import ROOT, artifact_dir

SERVABLE = "['baseline-rv60', 'xgb-v1', 'xgb-v2']"


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    artifact_dir("xgb-v2")
    reg = ModelRegistry(ROOT / "compiled_models", ServerMetrics(CollectorRegistry()))
    reg.configure("xgb-v2", ("xgb-v1", "baseline-rv60", "not-built"))
    return reg


def refused(reg: ModelRegistry, name: str, version: str) -> ServiceError:
    with pytest.raises(ServiceError) as exc:
        reg.resolve(name, version)
    return exc.value


@pytest.mark.parametrize("name", ["", "volspike"])
def test_the_model_name_or_no_name_is_the_active_artifact(registry, name):
    assert registry.model_name == "volspike"
    assert registry.resolve(name).name == "xgb-v2"
    assert registry.resolve(name, "xgb-v2").name == "xgb-v2"


@pytest.mark.parametrize("name", ["", "volspike"])
def test_a_version_pins_a_servable_artifact(registry, name):
    assert registry.resolve(name, "xgb-v1").name == "xgb-v1"
    assert registry.resolve(name, "baseline-rv60").name == "baseline-rv60"


def test_a_version_that_is_not_served_is_not_found(registry):
    err = refused(registry, "volspike", "xgb-v9")
    assert err.code == grpc.StatusCode.NOT_FOUND and err.kind == "NotFound"
    assert err.message == (
        f"model 'volspike' has no servable version 'xgb-v9'; servable: {SERVABLE}"
    )
    long = "v" * 100
    assert refused(registry, "", long).message == (
        f"model 'volspike' has no servable version '{'v' * 64}...'; servable: {SERVABLE}"
    )


def test_a_servable_version_that_failed_to_load_says_why(registry):
    err = refused(registry, "volspike", "not-built")
    assert err.code == grpc.StatusCode.UNAVAILABLE
    assert err.message.startswith("model 'not-built' is servable but not loaded: artifact ")
    assert err.message == refused(registry, "not-built", "").message  # as by its name


def test_an_artifact_name_answers_as_before(registry):
    assert registry.resolve("xgb-v1").name == "xgb-v1"
    assert registry.resolve("xgb-v2").name == "xgb-v2"
    assert registry.resolve("xgb-v1", "xgb-v1").name == "xgb-v1"
    err = refused(registry, "nope", "")
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert err.message == f"model 'nope' is not served; servable: {SERVABLE}"
    assert refused(registry, "nope", "xgb-v1").message == err.message  # the name first


def test_an_artifact_name_with_another_version_is_not_served(registry):
    err = refused(registry, "xgb-v1", "xgb-v2")
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert err.message == f"model 'xgb-v1' has no servable version 'xgb-v2'; servable: {SERVABLE}"
    long = "n" * 100
    registry_names = refused(registry, "xgb-v1", long).message
    assert f"has no servable version '{'n' * 64}...'" in registry_names


def test_the_configured_model_name_replaces_the_default(registry):
    try:
        registry.configure("xgb-v2", ("xgb-v1", "baseline-rv60", "not-built"), "vol-x")
        assert registry.resolve("vol-x").name == "xgb-v2"
        assert registry.resolve("vol-x", "xgb-v1").name == "xgb-v1"
        assert refused(registry, "volspike", "").message.startswith(
            "model 'volspike' is not served"
        )
        assert refused(registry, "vol-x", "nope").message.startswith(
            "model 'vol-x' has no servable version 'nope'"
        )
    finally:
        registry.configure("xgb-v2", ("xgb-v1", "baseline-rv60", "not-built"))
    assert registry.resolve("volspike").name == "xgb-v2"


def test_without_an_active_model(tmp_path):
    reg = ModelRegistry(tmp_path, ServerMetrics(CollectorRegistry()))
    assert refused(reg, "", "").code == grpc.StatusCode.UNAVAILABLE  # no_model
    assert refused(reg, "volspike", "").code == grpc.StatusCode.UNAVAILABLE
    assert refused(reg, "volspike", "xgb-v1").message == (
        "model 'volspike' has no servable version 'xgb-v1'; servable: []"
    )


def test_the_model_config_names_the_model(tmp_path):
    path = tmp_path / "model.toml"
    path.write_text('artifact = "xgb-v2"\nservable = ["xgb-v1"]\n')
    assert read_model_config(path).model_name == "volspike"
    path.write_text('artifact = "xgb-v2"\nmodel_name = "vol-x"\n')
    assert read_model_config(path).model_name == "vol-x"
    for bad in ('""', "5", '["a"]'):
        path.write_text(f'artifact = "xgb-v2"\nmodel_name = {bad}\n')
        with pytest.raises(ValueError, match="'model_name' must be a non-empty string"):
            read_model_config(path)
    assert read_model_config(ROOT / "config" / "model.toml").model_name == "volspike"
    # the served name may not be an artifact of the config: calls by that name would get
    # the active artifact, never that one (both servers refuse it)
    for text in (
        'artifact = "a"\nmodel_name = "a"\n',
        'artifact = "a"\nservable = ["b"]\nmodel_name = "b"\n',
    ):
        path.write_text(text)
        with pytest.raises(ValueError, match="is an artifact of this config"):
            read_model_config(path)
