import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Row(_message.Message):
    __slots__ = ("features",)
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    features: _containers.ScalarMap[str, float]
    def __init__(self, features: _Optional[_Mapping[str, float]] = ...) -> None: ...

class PackedRows(_message.Message):
    __slots__ = ("float32_le", "num_features")
    FLOAT32_LE_FIELD_NUMBER: _ClassVar[int]
    NUM_FEATURES_FIELD_NUMBER: _ClassVar[int]
    float32_le: bytes
    num_features: int
    def __init__(self, float32_le: _Optional[bytes] = ..., num_features: _Optional[int] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("model", "rows", "packed")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    model: str
    rows: _containers.RepeatedCompositeFieldContainer[Row]
    packed: PackedRows
    def __init__(self, model: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[Row, _Mapping]]] = ..., packed: _Optional[_Union[PackedRows, _Mapping]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("probabilities", "labels", "artifact", "artifact_sha256", "decision_threshold", "server_compute_seconds")
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    DECISION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SERVER_COMPUTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    labels: _containers.RepeatedScalarFieldContainer[bool]
    artifact: str
    artifact_sha256: str
    decision_threshold: float
    server_compute_seconds: float
    def __init__(self, probabilities: _Optional[_Iterable[float]] = ..., labels: _Optional[_Iterable[bool]] = ..., artifact: _Optional[str] = ..., artifact_sha256: _Optional[str] = ..., decision_threshold: _Optional[float] = ..., server_compute_seconds: _Optional[float] = ...) -> None: ...

class ModelInfoRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ModelInfoResponse(_message.Message):
    __slots__ = ("artifact", "artifact_sha256", "feature_names", "decision_threshold", "description", "created", "loaded_at", "active", "available_artifacts", "manifest_json", "calibrated", "trained_on", "model_name", "scope")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    DECISION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    TRAINED_ON_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    artifact: str
    artifact_sha256: str
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    decision_threshold: float
    description: str
    created: str
    loaded_at: _timestamp_pb2.Timestamp
    active: bool
    available_artifacts: _containers.RepeatedScalarFieldContainer[str]
    manifest_json: str
    calibrated: bool
    trained_on: str
    model_name: str
    scope: str
    def __init__(self, artifact: _Optional[str] = ..., artifact_sha256: _Optional[str] = ..., feature_names: _Optional[_Iterable[str]] = ..., decision_threshold: _Optional[float] = ..., description: _Optional[str] = ..., created: _Optional[str] = ..., loaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active: _Optional[bool] = ..., available_artifacts: _Optional[_Iterable[str]] = ..., manifest_json: _Optional[str] = ..., calibrated: _Optional[bool] = ..., trained_on: _Optional[str] = ..., model_name: _Optional[str] = ..., scope: _Optional[str] = ...) -> None: ...
