package main

import (
	"github.com/prometheus/client_golang/prometheus"
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
		latency:     histogramVec(mRpcDuration),
		requests:    counterVec(mRpcRequests),
		errors:      counterVec(mRpcErrors),
		inFlight:    gaugeVec(mRpcInFlight),
		scoring:     gauge(mRowsScoring),
		rows:        histogramVec(mRowsPerCall),
		predictions: counterVec(mPredictions),
		positives:   counterVec(mPositiveLabels),
		probability: histogramVec(mPredictedProbability),
		modelLoad:   histogramVec(mModelLoad),
		reloads:     counterVec(mModelReloads),
		activeModel: gaugeVec(mActiveModel),
		serving:     gauge(mServing),
	}
	reg.MustRegister(m.latency, m.requests, m.errors, m.inFlight, m.scoring, m.rows, m.predictions, m.positives,
		m.probability, m.modelLoad, m.reloads, m.activeModel, m.serving)
	for _, result := range []string{resultOk, resultFailed} { // present from the start: increase() sees the first
		m.reloads.WithLabelValues(result)
	}
	// Predict's outcome series too: a series born at its first failure hides that failure
	// from rate() (the errors SLI missed a first burst of a new code)
	m.requests.WithLabelValues("Predict", "OK")
	for _, kc := range kindCodes {
		m.requests.WithLabelValues("Predict", kc.Code)
		m.errors.WithLabelValues("Predict", kc.Code, kc.Kind)
	}
	return m
}

// The metric families of proto/contract.toml (contract_gen.go), as the Python server
// registers them.
func counterVec(s metricSpec) *prometheus.CounterVec {
	mustBe(s, "counter")
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: s.Name, Help: s.Help}, s.Labels)
}

func gaugeVec(s metricSpec) *prometheus.GaugeVec {
	mustBe(s, "gauge")
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: s.Name, Help: s.Help}, s.Labels)
}

func gauge(s metricSpec) prometheus.Gauge {
	mustBe(s, "gauge")
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: s.Name, Help: s.Help})
}

// mustBe stops the start (a programming error, caught by every test) when the Go type
// chosen for a family is not the contract's.
func mustBe(s metricSpec, kind string) {
	if s.Type != kind {
		panic(s.Name + " is a " + s.Type + " in proto/contract.toml, not a " + kind)
	}
}

func histogramVec(s metricSpec) *prometheus.HistogramVec {
	mustBe(s, "histogram")
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: s.Name, Help: s.Help, Buckets: s.Buckets}, s.Labels)
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
