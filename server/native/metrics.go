package main

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The same names, labels and buckets as the Python server (server/metrics.py), so
// dashboards and alerts work against either.
var (
	latencyBuckets     = []float64{0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5}
	rowBuckets         = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 100_000}
	probabilityBuckets = []float64{0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95}
	loadBuckets        = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0}
)

// Metrics is registered on the registry it is given; nothing is global.
type Metrics struct {
	latency     *prometheus.HistogramVec
	requests    *prometheus.CounterVec
	errors      *prometheus.CounterVec
	inFlight    *prometheus.GaugeVec
	scoring     prometheus.Gauge
	rows        *prometheus.HistogramVec
	predictions *prometheus.CounterVec
	positives   *prometheus.CounterVec
	probability *prometheus.HistogramVec
	modelLoad   *prometheus.HistogramVec
	reloads     *prometheus.CounterVec
	activeModel *prometheus.GaugeVec
	serving     prometheus.Gauge
}

func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "volspike_rpc_duration_seconds", Help: "Server-side duration of each RPC, by method, artifact and gRPC code.",
			Buckets: latencyBuckets}, []string{"method", "artifact", "code"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "volspike_rpc_requests_total", Help: "RPCs handled, by method and gRPC code."}, []string{"method", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "volspike_rpc_errors_total", Help: "Failed RPCs, by method, gRPC code and error type."}, []string{"method", "code", "type"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "volspike_rpc_in_flight", Help: "RPCs being served right now, by method."}, []string{"method"}),
		scoring: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "volspike_rows_scoring", Help: "Rows being run through the trees right now."}),
		rows: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "volspike_rows_per_call", Help: "Rows scored per call.", Buckets: rowBuckets}, []string{"method"}),
		predictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "volspike_predictions_total", Help: "Rows scored, by artifact."}, []string{"artifact"}),
		positives: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "volspike_positive_labels_total", Help: "Rows labelled as a coming spike, by artifact."}, []string{"artifact"}),
		probability: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "volspike_predicted_probability", Help: "Predicted spike probability of every scored row.",
			Buckets: probabilityBuckets}, []string{"artifact"}),
		modelLoad: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "volspike_model_load_duration_seconds", Help: "Verify + load + warm-up time of an artifact, by result.",
			Buckets: loadBuckets}, []string{"artifact", "result"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "volspike_model_reloads_total", Help: "Model switches attempted, by result (ok / failed)."}, []string{"result"}),
		activeModel: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "volspike_active_model_info", Help: "1 for the artifact currently served (labels carry name and sha256)."},
			[]string{"artifact", "sha256"}),
		serving: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "volspike_serving", Help: "1 while health is SERVING, else 0."}),
	}
	reg.MustRegister(m.latency, m.requests, m.errors, m.inFlight, m.scoring, m.rows, m.predictions, m.positives,
		m.probability, m.modelLoad, m.reloads, m.activeModel, m.serving)
	for _, result := range []string{"ok", "failed"} { // present from the start: increase() sees the first
		m.reloads.WithLabelValues(result)
	}
	return m
}

// SetActive leaves only the active artifact's info series.
func (m *Metrics) SetActive(artifact, sha256 string) {
	m.activeModel.Reset()
	m.activeModel.WithLabelValues(artifact, sha256).Set(1)
}

// RecordPredictions counts a batch of answers. One histogram observe per row costs
// ~20 ns, far below the tree evaluation.
func (m *Metrics) RecordPredictions(model *Model, probs []float32) {
	positives := 0
	hist := m.probability.WithLabelValues(model.Name)
	for _, p := range probs {
		if p >= model.Threshold {
			positives++
		}
		hist.Observe(float64(p))
	}
	m.predictions.WithLabelValues(model.Name).Add(float64(len(probs)))
	m.positives.WithLabelValues(model.Name).Add(float64(positives))
}
