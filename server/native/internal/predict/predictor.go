// Package predict is the volatility.v1.Predictor service (Predict, ModelInfo) and the
// scoring both services share: a decoded batch run through the active artifact's trees on
// the idle cores (Score), its answers counted. It imports contract, registry, rpc and
// telemetry; kserve imports it.
package predict

import (
	"context"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "volspike/server/native/gen/volatilitypb"
	"volspike/server/native/internal/contract"
	"volspike/server/native/internal/registry"
	"volspike/server/native/internal/rpc"
	"volspike/server/native/internal/telemetry"
)

// Service holds what every method needs.
type Service struct {
	w        *rpc.Wrapper // child spans
	metrics  *telemetry.Metrics
	registry *registry.Registry
	maxRows  int
}

// New is the Predictor over reg; a call may carry at most maxRows rows.
func New(w *rpc.Wrapper, metrics *telemetry.Metrics, reg *registry.Registry, maxRows int) *Service {
	return &Service{w: w, metrics: metrics, registry: reg, maxRows: maxRows}
}

// Predict: named rows or packed float32 -> probability and label per row.
func (s *Service) Predict(ctx context.Context, call *rpc.Call, req *pb.PredictRequest) (proto.Message, error) {
	model, err := s.registry.Resolve(req.Model, "")
	if err != nil {
		return nil, err
	}
	call.Artifact = model.Name
	t0 := time.Now()
	end := s.w.ChildSpan(ctx, call, "decode")
	x, err := s.decodePredict(req, model)
	end()
	if err != nil {
		return nil, err
	}
	threshold := model.Threshold() // read once: a config reload may change it mid-call
	probs, err := s.Score(ctx, call, model, threshold, x, s.packedField(req))
	if err != nil {
		return nil, err
	}
	end = s.w.ChildSpan(ctx, call, "encode")
	labels := make([]bool, len(probs))
	for i, p := range probs {
		labels[i] = p >= threshold
	}
	resp := &pb.PredictResponse{
		Probabilities:        probs,
		Labels:               labels,
		Artifact:             model.Name,
		ArtifactSha256:       model.Sha256,
		DecisionThreshold:    threshold,
		ServerComputeSeconds: time.Since(t0).Seconds(),
	}
	end()
	return resp, nil
}

// Score scores a decoded batch (in a "predict" child span) and counts the answers;
// Predict and ModelInfer both go through it. field names the request field the rows came
// from (an infinity's message says where it was); threshold is the one the call read (it
// counts the positives).
func (s *Service) Score(ctx context.Context, call *rpc.Call, model *registry.Model, threshold float32, x []float32, field string) ([]float32, error) {
	rows := len(x) / model.NFeatures
	call.Rows = rows
	end := s.w.ChildSpan(ctx, call, "predict", attribute.Int("volspike.rows", rows), attribute.String("volspike.artifact", model.Name))
	probs, err := s.evaluate(ctx, call, model, x, rows, field)
	end()
	if err == nil {
		s.metrics.RecordPredictions(model.Name, threshold, probs)
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
// every contract.StopCheckRows rows, ~6 ms of trees: proto/contract.toml). Extra cores are only taken
// if free, so calls never wait on each other for more than one.
func predictOnCores(ctx context.Context, model *registry.Model, x, out []float32) (int, bool) {
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
	chunk, used := chunkRows(rows, n)
	for ; n > used; n-- { // rounding up left a core nothing to do
		<-cores
	}
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

// blockRows: the AVX-512 layout (compiled_models/forest_simd.c) scores whole blocks of
// 64 rows and sends a tail of fewer than 24 to TL2cgen's slower per-row code, so chunks
// start on block boundaries: only the batch's own tail can be short.
const blockRows = 64

// chunkRows splits rows over at most n cores: the chunk size, a multiple of blockRows, and
// how many chunks (1..n) that takes, none of them empty.
func chunkRows(rows, n int) (chunk, used int) {
	chunk = (rows + n - 1) / n
	chunk = (chunk + blockRows - 1) / blockRows * blockRows
	return chunk, max(1, (rows+chunk-1)/chunk)
}

// predictRange scores rows [lo, hi) in slices of contract.StopCheckRows, stopping when ctx ends; it
// returns the first row holding an infinity (-1: none) and whether it scored them all.
func predictRange(ctx context.Context, model *registry.Model, x, out []float32, lo, hi int) (int, bool) {
	width := model.NFeatures
	start := lo
	for ; start < hi && (start == lo || ctx.Err() == nil); start += contract.StopCheckRows {
		end := min(start+contract.StopCheckRows, hi)
		if b := model.Predict(x[start*width:end*width], out[start:end]); b >= 0 {
			return start + b, false
		}
	}
	return -1, start >= hi
}

// evaluate runs the trees; an infinity found by the native loop names its row.
func (s *Service) evaluate(ctx context.Context, call *rpc.Call, model *registry.Model, x []float32, rows int, field string) ([]float32, error) {
	out := make([]float32, rows)
	s.metrics.AddScoring(rows)
	bad, complete := predictOnCores(ctx, model, x, out)
	s.metrics.AddScoring(-rows)
	switch {
	case bad >= 0:
		return nil, contract.ErrInfinite(field, bad)
	case rpc.PastDeadline(ctx): // even a whole answer is void after the deadline (as in Python)
		return nil, rpc.DeadlineScoring(call, rows)
	case !complete: // cancelled while scoring: rows are missing, answer nothing
		return nil, contract.ErrCancelledScoring(rows)
	}
	return out, nil
}

func (s *Service) decodePredict(req *pb.PredictRequest, model *registry.Model) ([]float32, error) {
	hasRows, hasPacked := len(req.Rows) > 0, req.Packed != nil
	switch {
	case hasRows && hasPacked:
		return nil, contract.ErrRowsAndPacked()
	case hasPacked:
		width := model.NFeatures
		if int(req.Packed.NumFeatures) != width {
			return nil, contract.ErrWidth("packed", int(req.Packed.NumFeatures), width, strings.Join(model.Manifest.FeatureNames, ", "))
		}
		return PackedMatrix(req.Packed.Float32Le, width, s.maxRows, "packed.float32_le")
	case hasRows:
		return decodeRows(req.Rows, model.Manifest.FeatureNames, s.maxRows)
	}
	return nil, contract.ErrNoRows()
}

// PackedMatrix reads data as rows of width float32 (at most maxRows), checking shape and
// size; infinities are found by the native loop. field names data in an error.
func PackedMatrix(data []byte, width, maxRows int, field string) ([]float32, error) {
	if len(data) == 0 {
		return nil, contract.ErrEmpty(field)
	}
	rowBytes := 4 * width
	if len(data)%rowBytes != 0 {
		return nil, contract.ErrRagged(field, len(data), width)
	}
	rows := len(data) / rowBytes
	if rows > maxRows {
		return nil, contract.ErrTooManyRows(field, rows, maxRows)
	}
	return registry.Float32View(data), nil
}

func decodeRows(rows []*pb.Row, names []string, maxRows int) ([]float32, error) {
	if len(rows) > maxRows {
		return nil, contract.ErrTooManyRows("rows", len(rows), maxRows)
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
			return nil, contract.ErrRowNames(i, describeRow(feats, names))
		}
	}
	for k, v := range out {
		if math.IsInf(float64(v), 0) {
			return nil, contract.ErrInfiniteNamed(k/width, names[k%width])
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
		parts = append(parts, contract.TextUnknownFeatures(nameList(unknown)))
	}
	if len(missing) > 0 {
		parts = append(parts, contract.TextMissingFeatures(nameList(missing)))
	}
	return strings.Join(parts, contract.RowProblemsSeparator)
}

// nameList lists at most contract.NamesInError offending names (then a count), each cut to
// contract.NameCharsInError characters (proto/contract.toml [limits]): a hostile request must not
// make a status message larger than clients accept.
func nameList(names []string) string {
	shown := make([]string, 0, contract.NamesInError)
	for _, n := range names[:min(len(names), contract.NamesInError)] {
		if r := []rune(n); len(r) > contract.NameCharsInError {
			n = string(r[:contract.NameCharsInError]) + "..."
		}
		shown = append(shown, "'"+n+"'")
	}
	s := strings.Join(shown, ", ")
	if more := len(names) - len(shown); more > 0 {
		s += contract.TextMoreNames(more)
	}
	return s
}

// ModelInfo describes the active artifact (or the named one) and the served model name.
func (s *Service) ModelInfo(_ context.Context, call *rpc.Call, req *pb.ModelInfoRequest) (proto.Message, error) {
	model, err := s.registry.Resolve(req.Model, "")
	if err != nil {
		return nil, err
	}
	call.Artifact = model.Name
	active := s.registry.Active()
	m := model.Manifest
	return &pb.ModelInfoResponse{
		Artifact:           model.Name,
		ArtifactSha256:     model.Sha256,
		FeatureNames:       m.FeatureNames,
		DecisionThreshold:  model.Threshold(), // the config's, else the manifest's
		Description:        m.Description,
		Created:            m.Created,
		LoadedAt:           timestamppb.New(model.LoadedAt),
		Active:             active != nil && active.Name == model.Name,
		AvailableArtifacts: s.registry.Available(),
		ManifestJson:       model.Manifest.JSON,
		Calibrated:         model.Calibration != nil,
		TrainedOn:          m.TrainedOn,
		Scope:              m.Scope,
		ModelName:          s.registry.ModelName(),
	}, nil
}
