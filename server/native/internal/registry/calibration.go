package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
)

// Calibration maps the compiled trees' probability onto the scale decision_threshold is
// on. The manifest holds {} (identity: a nil *Calibration) or {"method": "isotonic",
// "x": [...], "y": [...]}: p_out = float32(interp(float64(p), x, y)) with numpy's
// np.interp semantics, as compiled_models/calibration.py applies it.
type Calibration struct {
	X, Y []float64
}

// parseCalibration validates the manifest's "calibration" value; nil means identity.
func parseCalibration(raw json.RawMessage) (*Calibration, error) {
	if len(raw) == 0 {
		return nil, nil // absent
	}
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, errors.New("calibration must be an object, got null")
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, errors.New("calibration must be an object")
	}
	if len(doc) == 0 {
		return nil, nil
	}
	var method string
	// the method names how the knots were fitted (compiled_models/calibration.py); both
	// are applied alike
	if err := json.Unmarshal(doc["method"], &method); err != nil || (method != "isotonic" && method != "platt") {
		return nil, errors.New("calibration method must be 'isotonic' or 'platt'")
	}
	_, hasX := doc["x"]
	_, hasY := doc["y"]
	if len(doc) != 3 || !hasX || !hasY {
		return nil, errors.New("calibration must have exactly the keys method, x, y")
	}
	c := &Calibration{}
	for _, k := range []struct {
		key string
		dst *[]float64
	}{{"x", &c.X}, {"y", &c.Y}} {
		// []*float64: json.Unmarshal reads a null element as "leave it" into []float64
		// (it loaded [null, 1] as [0, 1]), where Python refuses it.
		var vals []*float64
		if err := json.Unmarshal(doc[k.key], &vals); err != nil || vals == nil || slices.Contains(vals, nil) {
			return nil, errors.New("calibration " + k.key + " must be a list of numbers")
		}
		for _, v := range vals {
			*k.dst = append(*k.dst, *v)
		}
	}
	return c, c.validate()
}

// validate refuses knots np.interp would not treat as a monotone map into [0, 1].
func (c *Calibration) validate() error {
	for _, k := range []struct {
		key string
		v   []float64
	}{{"x", c.X}, {"y", c.Y}} {
		for _, v := range k.v {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return errors.New("calibration " + k.key + " must be finite")
			}
		}
	}
	n := len(c.X)
	if n != len(c.Y) || n < 2 {
		return fmt.Errorf("calibration x and y need the same length >= 2, got %d and %d", len(c.X), len(c.Y))
	}
	for i := 1; i < n; i++ {
		if !(c.X[i] > c.X[i-1]) {
			return errors.New("calibration x must be strictly increasing")
		}
	}
	for i := 1; i < n; i++ {
		if !(c.Y[i] >= c.Y[i-1]) {
			return errors.New("calibration y must be non-decreasing")
		}
	}
	if c.Y[0] < 0 || c.Y[n-1] > 1 {
		return errors.New("calibration y must lie within [0, 1]")
	}
	return nil
}

// Apply calibrates out in place: one binary search over the knots per row.
func (c *Calibration) Apply(out []float32) {
	x, y := c.X, c.Y
	last := len(x) - 1
	for i, p := range out {
		v := float64(p)
		switch {
		case v != v: // NaN stays NaN, as in np.interp (the trees never return one)
		case v <= x[0]:
			out[i] = float32(y[0])
		case v >= x[last]:
			out[i] = float32(y[last])
		default:
			j := sort.SearchFloat64s(x, v) // x[j-1] < v <= x[j], 1 <= j <= last
			if x[j] == v {
				out[i] = float32(y[j])
				continue
			}
			j--
			slope := (y[j+1] - y[j]) / (x[j+1] - x[j])
			// numpy's formula; the explicit conversion forbids a fused multiply-add.
			out[i] = float32(float64(slope*(v-x[j])) + y[j])
		}
	}
}
