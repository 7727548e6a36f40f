package registry

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// Mutation: drop the clamping cases in Apply (or the x[j] == v case) and this fails.
func TestIsotonicInterpolationMatchesHandComputedValues(t *testing.T) {
	c, err := parseCalibration(json.RawMessage(`{"method": "isotonic", "x": [0.1, 0.3, 0.5, 0.9], "y": [0.0, 0.2, 0.2, 1.0]}`))
	if err != nil || c == nil {
		t.Fatalf("got %v, %v", c, err)
	}
	cases := []struct{ in, want float32 }{
		{0, 0},       // below x[0]: clamped to y[0]
		{0.05, 0},    // below x[0]
		{0.1, 0},     // on the first knot
		{0.2, 0.1},   // halfway 0.1..0.3: 0 + 0.5*0.2
		{0.25, 0.15}, // three quarters
		{0.3, 0.2},   // on a knot
		{0.4, 0.2},   // the flat piece
		{0.7, 0.6},   // halfway 0.5..0.9: 0.2 + 0.5*0.8
		{0.8, 0.8},   // 0.2 + 0.75*0.8
		{0.9, 1},     // on the last knot
		{0.95, 1},    // above x[-1]: clamped to y[-1]
		{1, 1},
	}
	out := make([]float32, len(cases))
	for i, c := range cases {
		out[i] = c.in
	}
	c.Apply(out)
	for i, tc := range cases {
		if math.Abs(float64(out[i]-tc.want)) > 1e-7 {
			t.Errorf("calibrate(%v) = %v, want %v", tc.in, out[i], tc.want)
		}
	}
}

func TestEmptyOrAbsentCalibrationIsTheIdentity(t *testing.T) {
	for _, raw := range []string{"", "{}", " { } "} {
		if c, err := parseCalibration(json.RawMessage(raw)); c != nil || err != nil {
			t.Errorf("%q: got %v, %v; want nil, nil", raw, c, err)
		}
	}
}

// invalidCalibrations is every refusal, by the words its error must contain.
var invalidCalibrations = map[string]string{
	`{"method": "isotonic", "x": [null, 1], "y": [0, 1]}`:             "x must be a list of numbers", // loaded as [0, 1] before
	`{"method": "isotonic", "x": [0, 1], "y": [0, null]}`:             "y must be a list of numbers",
	`{"method": "isotonic", "x": [0, 0.5, 1], "y": [0, 0.6, 0.4]}`:    "y must be non-decreasing",
	`{"method": "isotonic", "x": [0, 0.5, 0.5], "y": [0, 0.5, 1]}`:    "x must be strictly increasing",
	`{"method": "isotonic", "x": [0, 0.7, 0.5], "y": [0, 0.5, 1]}`:    "x must be strictly increasing",
	`{"method": "isotonic", "x": [0.5], "y": [0.5]}`:                  "same length >= 2, got 1 and 1",
	`{"method": "isotonic", "x": [0, 1], "y": [0, 0.5, 1]}`:           "same length >= 2, got 2 and 3",
	`{"method": "isotonic", "x": [0, 1], "y": [0, 1.5]}`:              "y must lie within [0, 1]",
	`{"method": "isotonic", "x": [0, 1], "y": [-0.1, 1]}`:             "y must lie within [0, 1]",
	`{"method": "isotonic", "x": [0, 1e400], "y": [0, 1]}`:            "calibration x must be a list of numbers",
	`{"method": "isotonic", "x": [0, "1"], "y": [0, 1]}`:              "calibration x must be a list of numbers",
	`{"method": "isotonic", "x": [0, 1]}`:                             "exactly the keys method, x, y",
	`{"method": "platt", "a": 1, "b": 0}`:                             "exactly the keys method, x, y",
	`{"method": "logistic", "x": [0, 1], "y": [0, 1]}`:                "method must be 'isotonic' or 'platt'",
	`{"x": [0, 1], "y": [0, 1]}`:                                      "method must be 'isotonic' or 'platt'",
	`[0, 1]`:                                                          "calibration must be an object",
	`null`:                                                            "calibration must be an object",
	`{"method": "isotonic", "x": [0, 1], "y": [0, 1], "extra": true}`: "exactly the keys method, x, y",
}

func TestInvalidCalibrationsAreRefused(t *testing.T) {
	for raw, want := range invalidCalibrations {
		_, err := parseCalibration(json.RawMessage(raw))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error containing %q", raw, err, want)
		}
	}
	// JSON has no NaN (a manifest holding one is unreadable), so the check is on the values.
	for _, c := range []Calibration{
		{X: []float64{0, math.NaN()}, Y: []float64{0, 1}},
		{X: []float64{0, 1}, Y: []float64{0, math.Inf(1)}},
	} {
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), "must be finite") {
			t.Errorf("%v: got %v, want 'must be finite'", c, err)
		}
	}
}

func TestACalibratedArtifactReturnsCalibratedProbabilities(t *testing.T) {
	knots := map[string]any{"method": "isotonic", "x": []float64{0, 0.01, 0.1, 0.5, 1}, "y": []float64{0.05, 0.1, 0.3, 0.35, 0.9}}
	folder := copyArtifact(t, t.TempDir(), "calibrated", func(doc map[string]any, lib []byte) []byte {
		doc["calibration"] = knots
		doc["trained_on"] = "E-mini ticks"
		return lib
	})
	m, err := LoadModel(folder)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WarmUp(folder); err != nil {
		t.Fatal(err)
	}
	if m.Calibration == nil || m.Manifest.TrainedOn != "E-mini ticks" {
		t.Fatalf("calibration %v, trained_on %q", m.Calibration, m.Manifest.TrainedOn)
	}
	x := make([]float32, 64*m.NFeatures)
	for i := range x {
		x[i] = float32(math.Sin(float64(i))) * 0.002
	}
	raw, got := make([]float32, 64), make([]float32, 64)
	m.PredictRaw(x, raw)
	m.Predict(x, got)
	want := append([]float32(nil), raw...)
	m.Calibration.Apply(want)
	for i := range got {
		if got[i] != want[i] || got[i] < 0.05 || got[i] > 0.9 {
			t.Fatalf("row %d: raw %v, got %v, want %v", i, raw[i], got[i], want[i])
		}
	}
}

func TestAnArtifactWithABadCalibrationIsRefused(t *testing.T) {
	folder := copyArtifact(t, t.TempDir(), "badcal", func(doc map[string]any, lib []byte) []byte {
		doc["calibration"] = map[string]any{"method": "isotonic", "x": []float64{0, 1}, "y": []float64{1, 0}}
		return lib
	})
	_, err := LoadModel(folder)
	if err == nil || err.Error() != "artifact badcal: calibration y must be non-decreasing" {
		t.Fatalf("got %v", err)
	}
}
