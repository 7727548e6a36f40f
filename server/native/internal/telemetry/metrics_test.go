package telemetry

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"volspike/server/native/internal/contract"
)

// TestMetricsAreTheContracts: every family of proto/contract.toml (internal/contract), with
// its type and help, and nothing else.
func TestMetricsAreTheContracts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.SetActive("a", "b") // label-vector families appear once they have a child
	for _, method := range []string{"Predict"} {
		m.latency.WithLabelValues(method, "a", "OK")
		m.requests.WithLabelValues(method, "OK")
		m.errors.WithLabelValues(method, "OK", "Internal")
		m.inFlight.WithLabelValues(method)
		m.rows.WithLabelValues(method)
	}
	m.predictions.WithLabelValues("a")
	m.positives.WithLabelValues("a")
	m.probability.WithLabelValues("a")
	m.modelLoad.WithLabelValues("a", "ok")
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	types := map[dto.MetricType]string{dto.MetricType_COUNTER: "counter", dto.MetricType_GAUGE: "gauge", dto.MetricType_HISTOGRAM: "histogram"}
	got := map[string]string{}
	for _, f := range families {
		got[f.GetName()] = types[f.GetType()] + " " + f.GetHelp()
	}
	specs := []contract.MetricSpec{contract.MetricRpcDuration, contract.MetricRpcRequests, contract.MetricRpcErrors,
		contract.MetricRpcInFlight, contract.MetricRowsScoring, contract.MetricRowsPerCall, contract.MetricPredictions,
		contract.MetricPositiveLabels, contract.MetricPredictedProbability, contract.MetricModelLoad,
		contract.MetricModelReloads, contract.MetricActiveModel, contract.MetricServing}
	if len(got) != len(specs) {
		t.Errorf("%d families, the contract has %d: %v", len(got), len(specs), got)
	}
	for _, s := range specs {
		if want := s.Type + " " + s.Help; got[s.Name] != want {
			t.Errorf("%s: got %q, want %q", s.Name, got[s.Name], want)
		}
	}
	defer func() {
		if p := recover(); p == nil || !strings.Contains(p.(string), "is a counter in proto/contract.toml, not a gauge") {
			t.Errorf("a gauge built from a counter's spec: recovered %v", p)
		}
	}()
	gaugeVec(contract.MetricRpcRequests)
}
