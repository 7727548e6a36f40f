package predict

import (
	"errors"
	"math"
	"strings"
	"testing"

	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	pb "volspike/server/native/gen/volatilitypb"
	"volspike/server/native/internal/contract"
	"volspike/server/native/internal/registry"
)

// testFeatures is a schema of this test's own: the servers read theirs from the manifest.
var testFeatures = []string{"f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8"}

func testService() (*Service, *registry.Model) {
	return &Service{maxRows: 100}, &registry.Model{Name: "m", NFeatures: len(testFeatures), Manifest: registry.Manifest{FeatureNames: testFeatures}}
}

func goodRow() *pb.Row {
	feats := map[string]float64{}
	for _, n := range testFeatures {
		feats[n] = 0.5
	}
	return &pb.Row{Features: feats}
}

func TestDecodeNamesTheField(t *testing.T) {
	s, m := testService()
	bad := goodRow()
	bad.Features["oops"] = 1
	delete(bad.Features, "f8")
	inf := goodRow()
	inf.Features["f5"] = 1e300
	cases := []struct {
		req  *pb.PredictRequest
		code grpccodes.Code
		msg  string
	}{
		{&pb.PredictRequest{}, grpccodes.InvalidArgument, "request has no rows"},
		{&pb.PredictRequest{Rows: []*pb.Row{goodRow(), bad}}, grpccodes.InvalidArgument,
			"rows[1].features: unknown feature(s) 'oops'; missing feature(s) 'f8' (use NaN if unknown)"},
		{&pb.PredictRequest{Rows: []*pb.Row{inf}}, grpccodes.InvalidArgument,
			"rows[0].features['f5'] is infinite or overflows float32"},
		{&pb.PredictRequest{Packed: &pb.PackedRows{NumFeatures: 9}}, grpccodes.InvalidArgument, "packed.float32_le is empty"},
		{&pb.PredictRequest{Packed: &pb.PackedRows{Float32Le: make([]byte, 45), NumFeatures: 9}}, grpccodes.InvalidArgument,
			"packed.float32_le has 45 bytes, not a whole number of rows of 9 float32"},
		{&pb.PredictRequest{Packed: &pb.PackedRows{Float32Le: make([]byte, 32), NumFeatures: 8}}, grpccodes.InvalidArgument,
			"packed.num_features is 8; the model expects 9"},
		{&pb.PredictRequest{Packed: &pb.PackedRows{Float32Le: make([]byte, 36*101), NumFeatures: 9}}, grpccodes.ResourceExhausted,
			"packed.float32_le: 101 rows exceed the limit of 100 per call"},
		{&pb.PredictRequest{Rows: []*pb.Row{goodRow()}, Packed: &pb.PackedRows{}}, grpccodes.InvalidArgument,
			"set either rows or packed, not both"},
	}
	for _, c := range cases {
		_, err := s.decodePredict(c.req, m)
		var se *contract.ServiceError
		if !errors.As(err, &se) || se.Code != c.code || !strings.Contains(se.Msg, c.msg) {
			t.Errorf("got %v, want %v %q", err, c.code, c.msg)
		}
	}
}

func TestNamedRowsKeepFeatureOrder(t *testing.T) {
	s, m := testService()
	row := goodRow()
	for i, n := range testFeatures {
		row.Features[n] = float64(i)
	}
	row.Features["f3"] = math.NaN()
	x, err := s.decodePredict(&pb.PredictRequest{Rows: []*pb.Row{row}}, m)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range x {
		if testFeatures[i] == "f3" {
			if !math.IsNaN(float64(v)) {
				t.Errorf("f3: want NaN, got %v", v)
			}
		} else if v != float32(i) {
			t.Errorf("%s: want %d, got %v", testFeatures[i], i, v)
		}
	}
}

// FuzzDecodePredict: any request bytes either decode to whole rows or fail with a
// client error code; nothing panics.
func FuzzDecodePredict(f *testing.F) {
	good, _ := proto.Marshal(&pb.PredictRequest{Rows: []*pb.Row{goodRow()}})
	f.Add(good)
	f.Add([]byte{0x1a, 0x03, 0x10, 0x0b, 0x0a})
	s, m := testService()
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &pb.PredictRequest{}
		if proto.Unmarshal(data, req) != nil {
			return
		}
		x, err := s.decodePredict(req, m)
		if err == nil {
			if len(x) == 0 || len(x)%m.NFeatures != 0 {
				t.Fatalf("decoded %d values", len(x))
			}
			return
		}
		var se *contract.ServiceError
		if !errors.As(err, &se) || (se.Code != grpccodes.InvalidArgument && se.Code != grpccodes.ResourceExhausted) || se.Msg == "" {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

func TestErrorNamesAreBounded(t *testing.T) {
	feats := map[string]float64{}
	for i := 0; i < 1000; i++ {
		feats[strings.Repeat("x", 100)+string(rune('a'+i%26))+strings.Repeat("y", i)] = 1
	}
	names := []string{"f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8"}
	msg := describeRow(feats, names)
	if len(msg) > 800 || !strings.Contains(msg, "and 995 more") || !strings.Contains(msg, "and 4 more") {
		t.Fatalf("%d bytes: %s", len(msg), msg)
	}
}
