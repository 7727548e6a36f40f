// Package kserve is the KServe v2 / Open Inference Protocol service
// (inference.GRPCInferenceService) over the same registry and the Predictor's scoring. It
// imports contract, config, predict, registry and rpc; nothing imports it but main.
package kserve

import (
	"context"
	"encoding/binary"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"google.golang.org/protobuf/proto"

	v2 "volspike/server/native/gen/inferencepb"
	"volspike/server/native/internal/config"
	"volspike/server/native/internal/contract"
	"volspike/server/native/internal/predict"
	"volspike/server/native/internal/registry"
	"volspike/server/native/internal/rpc"
)

// KServe v2 / Open Inference Protocol over the same registry. ModelInfer takes one FP32
// input of shape [N, F] (raw_input_contents or contents.fp32_contents) and returns
// "probability" (FP32 [N]) and "label" (BOOL [N]) as raw output contents, as Triton does.
// Its names and outputs are the contract's ([kserve] in proto/contract.toml).
const versionFile = "pyproject.toml" // [project] version: the one version string

// Service holds what every method needs.
type Service struct {
	scorer   *predict.Service // Score: the Predictor's scoring, spans and counts
	registry *registry.Registry
	maxRows  int
}

// New is the KServe service over reg, scoring with scorer; a call may carry at most
// maxRows rows.
func New(scorer *predict.Service, reg *registry.Registry, maxRows int) *Service {
	return &Service{scorer: scorer, registry: reg, maxRows: maxRows}
}

func (s *Service) ServerLive(context.Context, *rpc.Call, *v2.ServerLiveRequest) (proto.Message, error) {
	return &v2.ServerLiveResponse{Live: true}, nil
}

func (s *Service) ServerReady(context.Context, *rpc.Call, *v2.ServerReadyRequest) (proto.Message, error) {
	return &v2.ServerReadyResponse{Ready: s.registry.Active() != nil}, nil
}

func (s *Service) ModelReady(_ context.Context, _ *rpc.Call, req *v2.ModelReadyRequest) (proto.Message, error) {
	_, err := s.registry.Resolve(req.Name, req.Version)
	return &v2.ModelReadyResponse{Ready: err == nil}, nil
}

func (s *Service) ServerMetadata(context.Context, *rpc.Call, *v2.ServerMetadataRequest) (proto.Message, error) {
	return &v2.ServerMetadataResponse{Name: contract.KserveServerName, Version: serverVersion}, nil
}

// serverVersion is the project's version, read once from its pyproject.toml (the one
// source both servers use); "unknown" when the checkout is not beside the binary.
var serverVersion = func() string {
	var p struct {
		Project struct {
			Version string `toml:"version"`
		} `toml:"project"`
	}
	if _, err := toml.DecodeFile(filepath.Join(config.RepoRoot(), versionFile), &p); err != nil || p.Project.Version == "" {
		return "unknown"
	}
	return p.Project.Version
}()

func (s *Service) ModelMetadata(_ context.Context, call *rpc.Call, req *v2.ModelMetadataRequest) (proto.Message, error) {
	served := s.registry.ModelName()
	model, err := s.registry.ResolveServed(served, req.Name, req.Version)
	if err != nil {
		return nil, err
	}
	call.Artifact = model.Name
	byModelName := req.Name == "" || req.Name == served
	versions := []string{model.Name}
	if byModelName && req.Version == "" { // every version: the active one first
		versions = versions[:1]
		for _, name := range s.registry.Servable() {
			if name != model.Name {
				versions = append(versions, name)
			}
		}
	}
	resp := &v2.ModelMetadataResponse{
		Name:     servedName(served, req.Name, model),
		Versions: versions,
		Platform: contract.KservePlatform,
		Inputs:   []*v2.ModelMetadataResponse_TensorMetadata{{Name: contract.KserveInput, Datatype: contract.KserveInputDatatype, Shape: []int64{-1, int64(model.NFeatures)}}},
	}
	for _, name := range contract.KserveOutputOrder {
		resp.Outputs = append(resp.Outputs, &v2.ModelMetadataResponse_TensorMetadata{Name: name, Datatype: contract.KserveOutputTypes[name], Shape: []int64{-1}})
	}
	return resp, nil
}

func (s *Service) ModelInfer(ctx context.Context, call *rpc.Call, req *v2.ModelInferRequest) (proto.Message, error) {
	served := s.registry.ModelName()
	model, err := s.registry.ResolveServed(served, req.ModelName, req.ModelVersion)
	if err != nil {
		return nil, err
	}
	call.Artifact = model.Name
	x, field, err := s.decodeInfer(req, model.NFeatures)
	if err != nil {
		return nil, err
	}
	threshold := model.Threshold() // read once: a config reload may change it mid-call
	probs, err := s.scorer.Score(ctx, call, model, threshold, x, field)
	if err != nil {
		return nil, err
	}
	rows := len(probs)
	wanted := contract.KserveOutputOrder
	if len(req.Outputs) > 0 {
		wanted = nil
		for _, o := range req.Outputs {
			wanted = append(wanted, o.Name)
		}
	}
	resp := &v2.ModelInferResponse{ModelName: servedName(served, req.ModelName, model), ModelVersion: model.Name, Id: req.Id}
	for _, name := range wanted {
		resp.Outputs = append(resp.Outputs, &v2.ModelInferResponse_InferOutputTensor{
			Name: name, Datatype: contract.KserveOutputTypes[name], Shape: []int64{int64(rows)}})
		var raw []byte
		if name == contract.KserveOutputProbability {
			raw = make([]byte, 4*rows)
			for i, p := range probs {
				binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(p))
			}
		} else {
			raw = make([]byte, rows)
			for i, p := range probs {
				if p >= threshold {
					raw[i] = 1
				}
			}
		}
		resp.RawOutputContents = append(resp.RawOutputContents, raw)
	}
	return resp, nil
}

// servedName is the model name a KServe response carries: the served model name when the
// request named it (or nothing), else the artifact the request named.
func servedName(served, requested string, model *registry.Model) string {
	if requested == "" || requested == served {
		return served
	}
	return model.Name
}

func (s *Service) decodeInfer(req *v2.ModelInferRequest, width int) ([]float32, string, error) {
	seen := make(map[string]bool, len(contract.KserveOutputTypes))
	for _, o := range req.Outputs { // per output, in request order: unknown? then repeated?
		if _, ok := contract.KserveOutputTypes[o.Name]; !ok {
			names := append([]string(nil), contract.KserveOutputOrder...)
			sort.Strings(names)
			return nil, "", contract.ErrUnknownOutput(contract.Cut(o.Name, contract.NameCharsInError), contract.Quoted(names))
		}
		if seen[o.Name] {
			return nil, "", contract.ErrDuplicateOutput(contract.Cut(o.Name, contract.NameCharsInError))
		}
		seen[o.Name] = true
	}
	if len(req.Inputs) != 1 {
		return nil, "", contract.ErrInputCount(width, len(req.Inputs))
	}
	t := req.Inputs[0]
	name := "inputs[0] ('" + contract.Cut(t.Name, contract.NameCharsInError) + "')"
	if t.Datatype != contract.KserveInputDatatype {
		return nil, "", contract.ErrInputDatatype(name, contract.Cut(t.Datatype, contract.NameCharsInError))
	}
	if len(t.Shape) != 2 || t.Shape[1] != int64(width) || t.Shape[0] < 1 {
		return nil, "", contract.ErrInputShape(name, dims(t.Shape), width)
	}
	var data []byte
	field := "raw_input_contents[0]"
	if len(req.RawInputContents) > 0 {
		data = req.RawInputContents[0]
	} else {
		field = name + ".contents.fp32_contents"
		vals := t.GetContents().GetFp32Contents()
		data = make([]byte, 4*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
		}
	}
	x, err := predict.PackedMatrix(data, width, s.maxRows, field)
	if err != nil {
		return nil, "", err
	}
	if int64(len(x)/width) != t.Shape[0] {
		return nil, "", contract.ErrInputRows(field, len(x)/width, name, int(t.Shape[0]))
	}
	return x, field, nil
}

// dims spells a shape as [2, 9], at most contract.DimsInError dimensions, as the Python server does.
func dims(shape []int64) string {
	shown := make([]string, 0, contract.DimsInError)
	for _, d := range shape[:min(len(shape), contract.DimsInError)] {
		shown = append(shown, strconv.FormatInt(d, 10))
	}
	more := ""
	if len(shape) > contract.DimsInError {
		more = ", ..."
	}
	return "[" + strings.Join(shown, ", ") + more + "]"
}
