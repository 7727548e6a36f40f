package main

import (
	"context"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "volspike/server/native/gen/volatilitypb"
)

// Service holds what every method needs.
type Service struct {
	*Wrapper
	registry *Registry
	maxRows  int
}

// Predict: named rows or packed float32 -> probability and label per row.
func (s *Service) Predict(ctx context.Context, call *Call, req *pb.PredictRequest) (proto.Message, error) {
	model, err := s.registry.Resolve(req.Model, "")
	if err != nil {
		return nil, err
	}
	call.Artifact = model.Name
	t0 := time.Now()
	end := s.childSpan(ctx, call, "decode")
	x, err := s.decodePredict(req, model)
	end()
	if err != nil {
		return nil, err
	}
	probs, err := s.predict(ctx, call, model, x, s.packedField(req))
	if err != nil {
		return nil, err
	}
	end = s.childSpan(ctx, call, "encode")
	labels := make([]bool, len(probs))
	for i, p := range probs {
		labels[i] = p >= model.Threshold
	}
	resp := &pb.PredictResponse{
		Probabilities:        probs,
		Labels:               labels,
		Artifact:             model.Name,
		ArtifactSha256:       model.Sha256,
		DecisionThreshold:    model.Threshold,
		ServerComputeSeconds: time.Since(t0).Seconds(),
	}
	end()
	return resp, nil
}

// predict scores a decoded batch (in a "predict" child span) and counts the answers;
// Predict and ModelInfer both go through it.
func (s *Service) predict(ctx context.Context, call *Call, model *Model, x []float32, field string) ([]float32, error) {
	rows := len(x) / model.NFeatures
	call.Rows = rows
	end := s.childSpan(ctx, call, "predict", attribute.Int("volspike.rows", rows), attribute.String("volspike.artifact", model.Name))
	probs, err := s.score(ctx, call, model, x, rows, field)
	end()
	if err == nil {
		s.metrics.RecordPredictions(model, probs)
	}
	return probs, err
}

func (s *Service) packedField(req *pb.PredictRequest) string {
	if req.Packed != nil {
		return "packed.float32_le"
	}
	return "rows"
}

// cores admits as many native predicts at once as there are cores: more would only
// time-slice one another (every call slower, the same total), fewer would leave a core idle.
var cores = make(chan struct{}, runtime.GOMAXPROCS(0))

// minChunkRows: a batch is split across idle cores only in chunks at least this big
// (~0.4 ms of trees), far above the cost of handing a chunk to another goroutine.
const minChunkRows = 256

// predictOnCores scores on one core, plus whichever cores are idle when the batch is
// large, and returns the first row holding an infinity (-1: none) and whether every row was
// scored. It stops early, leaving rows unscored, once the call's context has ended (checked
// every stopCheckRows rows, ~6 ms of trees: proto/contract.toml). Extra cores are only taken
// if free, so calls never wait on each other for more than one.
func predictOnCores(ctx context.Context, model *Model, x, out []float32) (int, bool) {
	rows := len(out)
	cores <- struct{}{}
	n := 1
extra:
	for n < rows/minChunkRows {
		select {
		case cores <- struct{}{}:
			n++
		default:
			break extra
		}
	}
	chunk := (rows + n - 1) / n
	bads, done := make([]int, n), make([]bool, n)
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bads[i], done[i] = predictRange(ctx, model, x, out, i*chunk, min((i+1)*chunk, rows))
		}()
	}
	bads[0], done[0] = predictRange(ctx, model, x, out, 0, min(chunk, rows))
	wg.Wait()
	for range n {
		<-cores
	}
	for _, b := range bads {
		if b >= 0 {
			return b, false // chunks are in row order: the first one found is the first row
		}
	}
	return -1, !slices.Contains(done, false)
}

// predictRange scores rows [lo, hi) in slices of stopCheckRows, stopping when ctx ends; it
// returns the first row holding an infinity (-1: none) and whether it scored them all.
func predictRange(ctx context.Context, model *Model, x, out []float32, lo, hi int) (int, bool) {
	width := model.NFeatures
	start := lo
	for ; start < hi && (start == lo || ctx.Err() == nil); start += stopCheckRows {
		end := min(start+stopCheckRows, hi)
		if b := model.Predict(x[start*width:end*width], out[start:end]); b >= 0 {
			return start + b, false
		}
	}
	return -1, start >= hi
}

// score runs the trees; an infinity found by the native loop names its row.
func (s *Service) score(ctx context.Context, call *Call, model *Model, x []float32, rows int, field string) ([]float32, error) {
	out := make([]float32, rows)
	s.metrics.scoring.Add(float64(rows))
	bad, complete := predictOnCores(ctx, model, x, out)
	s.metrics.scoring.Sub(float64(rows))
	switch {
	case bad >= 0:
		return nil, errInfinite(field, bad)
	case pastDeadline(ctx): // even a whole answer is void after the deadline (as in Python)
		return nil, deadlineScoring(call, rows)
	case !complete: // cancelled while scoring: rows are missing, answer nothing
		return nil, errCancelledScoring(rows)
	}
	return out, nil
}

func (s *Service) decodePredict(req *pb.PredictRequest, model *Model) ([]float32, error) {
	hasRows, hasPacked := len(req.Rows) > 0, req.Packed != nil
	switch {
	case hasRows && hasPacked:
		return nil, errRowsAndPacked()
	case hasPacked:
		width := model.NFeatures
		if int(req.Packed.NumFeatures) != width {
			return nil, errWidth("packed", int(req.Packed.NumFeatures), width, strings.Join(model.Manifest.FeatureNames, ", "))
		}
		return packedMatrix(req.Packed.Float32Le, width, s.maxRows, "packed.float32_le")
	case hasRows:
		return decodeRows(req.Rows, model.Manifest.FeatureNames, s.maxRows)
	}
	return nil, errNoRows()
}

// packedMatrix checks shape and size; infinities are found by the native loop.
func packedMatrix(data []byte, width, maxRows int, field string) ([]float32, error) {
	if len(data) == 0 {
		return nil, errEmpty(field)
	}
	rowBytes := 4 * width
	if len(data)%rowBytes != 0 {
		return nil, errRagged(field, len(data), width)
	}
	rows := len(data) / rowBytes
	if rows > maxRows {
		return nil, errTooManyRows(field, rows, maxRows)
	}
	return float32View(data), nil
}

// float32View reads little-endian float32 in place when aligned (amd64 is
// little-endian), else copies.
func float32View(data []byte) []float32 {
	n := len(data) / 4
	if uintptr(unsafe.Pointer(&data[0]))%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&data[0])), n)
	}
	out := make([]float32, n)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), 4*n), data)
	return out
}

func decodeRows(rows []*pb.Row, names []string, maxRows int) ([]float32, error) {
	if len(rows) > maxRows {
		return nil, errTooManyRows("rows", len(rows), maxRows)
	}
	width := len(names)
	out := make([]float32, len(rows)*width)
	for i, row := range rows {
		feats := row.GetFeatures()
		ok := len(feats) == width
		for j, name := range names {
			v, present := feats[name]
			if !present {
				ok = false
				break
			}
			out[i*width+j] = float32(v)
		}
		if !ok {
			return nil, errRowNames(i, describeRow(feats, names))
		}
	}
	for k, v := range out {
		if math.IsInf(float64(v), 0) {
			return nil, errInfiniteNamed(k/width, names[k%width])
		}
	}
	return out, nil
}

func describeRow(feats map[string]float64, names []string) string {
	known := map[string]bool{}
	for _, n := range names {
		known[n] = true
	}
	var unknown, missing []string
	for k := range feats {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, n := range names {
		if _, ok := feats[n]; !ok {
			missing = append(missing, n)
		}
	}
	var parts []string
	if len(unknown) > 0 {
		parts = append(parts, textUnknownFeatures(nameList(unknown)))
	}
	if len(missing) > 0 {
		parts = append(parts, textMissingFeatures(nameList(missing)))
	}
	return strings.Join(parts, rowProblemsSeparator)
}

// nameList lists at most namesInError offending names (then a count), each cut to
// nameCharsInError characters (proto/contract.toml [limits]): a hostile request must not
// make a status message larger than clients accept.
func nameList(names []string) string {
	shown := make([]string, 0, namesInError)
	for _, n := range names[:min(len(names), namesInError)] {
		if r := []rune(n); len(r) > nameCharsInError {
			n = string(r[:nameCharsInError]) + "..."
		}
		shown = append(shown, "'"+n+"'")
	}
	s := strings.Join(shown, ", ")
	if more := len(names) - len(shown); more > 0 {
		s += textMoreNames(more)
	}
	return s
}

// ModelInfo describes the active artifact (or the named one) and the served model name.
func (s *Service) ModelInfo(_ context.Context, call *Call, req *pb.ModelInfoRequest) (proto.Message, error) {
	model, err := s.registry.Resolve(req.Model, "")
	if err != nil {
		return nil, err
	}
	call.Artifact = model.Name
	active := s.registry.active.Load()
	m := model.Manifest
	return &pb.ModelInfoResponse{
		Artifact:           model.Name,
		ArtifactSha256:     model.Sha256,
		FeatureNames:       m.FeatureNames,
		DecisionThreshold:  float32(m.DecisionThreshold),
		Description:        m.Description,
		Created:            m.Created,
		LoadedAt:           timestamppb.New(model.LoadedAt),
		Active:             active != nil && active.Name == model.Name,
		AvailableArtifacts: s.registry.Available(),
		ManifestJson:       model.Manifest.JSON,
		Calibrated:         model.Calibration != nil,
		TrainedOn:          m.TrainedOn,
		ModelName:          s.registry.ModelName(),
	}, nil
}
