"""KServe v2 / Open Inference Protocol (``inference.GRPCInferenceService``) over the same
registry, so Triton/KServe clients work unchanged.

ModelInfer takes one FP32 input of shape [N, F] (in ``raw_input_contents`` or
``contents.fp32_contents``) and returns ``probability`` (FP32 [N]) and ``label``
(BOOL [N]) as raw output contents, as Triton does.
"""

from __future__ import annotations

import tomllib

import numpy as np

from proto.inference import grpc_predict_v2_pb2 as v2
from proto.inference import grpc_predict_v2_pb2_grpc as v2_grpc
from server import codec
from server import contract_gen as contract
from server.config import ROOT
from server.errors import ServiceError
from server.predictor import Service, record_predictions, score
from server.rpc import CallInfo, rpc

OUTPUTS = contract.KSERVE_OUTPUTS
SERVER_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
"""The one version string (pyproject.toml), as the native server reads it."""


class InferenceService(Service, v2_grpc.GRPCInferenceServiceServicer):
    @rpc("/inference.GRPCInferenceService/ServerLive")
    def ServerLive(self, request, context, call: CallInfo):
        return v2.ServerLiveResponse(live=True)

    @rpc("/inference.GRPCInferenceService/ServerReady")
    def ServerReady(self, request, context, call: CallInfo):
        return v2.ServerReadyResponse(ready=self.registry.active is not None)

    @rpc("/inference.GRPCInferenceService/ModelReady")
    def ModelReady(self, request, context, call: CallInfo):
        try:
            self.registry.resolve(request.name, request.version)
        except ServiceError:  # not served, no model, failed to load, version not served
            return v2.ModelReadyResponse(ready=False)
        return v2.ModelReadyResponse(ready=True)

    @rpc("/inference.GRPCInferenceService/ServerMetadata")
    def ServerMetadata(self, request, context, call: CallInfo):
        return v2.ServerMetadataResponse(name=contract.KSERVE_SERVER_NAME, version=SERVER_VERSION)

    @rpc("/inference.GRPCInferenceService/ModelMetadata")
    def ModelMetadata(self, request, context, call: CallInfo):
        """``name``: the model name for a call naming it (or nothing), else the artifact's.
        ``versions``: the artifact a version or an artifact name pins, else every servable
        artifact, the active one first."""
        model_name = self.registry.model_name
        model = self.registry.resolve(request.name, request.version, model_name)
        call.artifact = model.name
        generic = request.name in ("", model_name)
        if request.version or not generic:
            versions = [model.name]
        else:  # the resolved model is the active one: read once
            versions = [model.name] + [n for n in self.registry.servable() if n != model.name]
        tensor = v2.ModelMetadataResponse.TensorMetadata
        return v2.ModelMetadataResponse(
            name=model_name if generic else model.name,
            versions=versions,
            platform=contract.KSERVE_PLATFORM,
            inputs=[
                tensor(
                    name=contract.KSERVE_INPUT,
                    datatype=contract.KSERVE_INPUT_DATATYPE,
                    shape=[-1, model.n_features],
                )
            ],
            outputs=[tensor(name=n, datatype=d, shape=[-1]) for n, d in OUTPUTS.items()],
        )

    @rpc("/inference.GRPCInferenceService/ModelInfer")
    def ModelInfer(self, request, context, call: CallInfo):
        """``model_version`` pins an artifact; the response names the model as the request
        did (the model name, or the artifact's) and the artifact in ``model_version``."""
        model_name = self.registry.model_name
        model = self.registry.resolve(request.model_name, request.model_version, model_name)
        threshold = model.threshold  # read once: a config reload may change it mid-call
        call.artifact = model.name
        x, field = self._decode(request, model.n_features)
        call.rows = len(x)
        codec.reject_infinite(x, field)
        with self.child_span(call, "predict", {"volspike.rows": len(x)}):
            probs = score(model, x, context, self.metrics, call)
        record_predictions(self.metrics, model, probs, threshold)
        wanted = [o.name for o in request.outputs] or list(OUTPUTS)
        raw = {
            contract.KSERVE_OUTPUT_PROBABILITY: probs.astype("<f4").tobytes(),
            contract.KSERVE_OUTPUT_LABEL: (probs >= threshold).astype(np.uint8).tobytes(),
        }
        out_tensor = v2.ModelInferResponse.InferOutputTensor
        return v2.ModelInferResponse(
            model_name=model_name if request.model_name in ("", model_name) else model.name,
            model_version=model.name,
            id=request.id,
            outputs=[out_tensor(name=n, datatype=OUTPUTS[n], shape=[len(probs)]) for n in wanted],
            raw_output_contents=[raw[n] for n in wanted],
        )

    def _decode(self, request: v2.ModelInferRequest, width: int) -> tuple[np.ndarray, str]:
        """The input matrix (shape and row count checked, not its values) and its field."""
        seen: set[str] = set()
        for o in request.outputs:  # each answered once: a repeat would multiply the response
            name = codec.cut(o.name, contract.NAME_CHARS_IN_ERROR)
            if o.name not in OUTPUTS:
                raise contract.unknown_output(name=name, outputs=codec.quoted(sorted(OUTPUTS)))
            if o.name in seen:
                raise contract.duplicate_output(name=name)
            seen.add(o.name)
        if len(request.inputs) != 1:
            raise contract.input_count(width=width, count=len(request.inputs))
        tensor = request.inputs[0]
        name = f"inputs[0] ('{codec.cut(tensor.name, contract.NAME_CHARS_IN_ERROR)}')"
        if tensor.datatype != contract.KSERVE_INPUT_DATATYPE:
            raise contract.input_datatype(
                tensor=name, datatype=codec.cut(tensor.datatype, contract.NAME_CHARS_IN_ERROR)
            )
        shape = list(tensor.shape)
        if len(shape) != 2 or shape[1] != width or shape[0] < 1:
            raise contract.input_shape(tensor=name, shape=codec.dims(shape), width=width)
        if request.raw_input_contents:
            data = request.raw_input_contents[0]
            field = "raw_input_contents[0]"
        else:
            data = np.asarray(tensor.contents.fp32_contents, dtype="<f4").tobytes()
            field = f"{name}.contents.fp32_contents"
        x = codec.packed_matrix(data, width, self.settings.max_rows, field)
        if len(x) != shape[0]:
            raise contract.input_rows(field=field, rows=len(x), tensor=name, declared=shape[0])
        return x, field
