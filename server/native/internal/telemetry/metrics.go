// Package telemetry is what the server reports about itself: the Prometheus families of
// the contract (Metrics, registered on the registry it is given), the OpenTelemetry tracer
// provider, and a limiter for log lines a client can cause. It imports only contract.
package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"

	"volspike/server/native/internal/contract"
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
		latency:     histogramVec(contract.MetricRpcDuration),
		requests:    counterVec(contract.MetricRpcRequests),
		errors:      counterVec(contract.MetricRpcErrors),
		inFlight:    gaugeVec(contract.MetricRpcInFlight),
		scoring:     gauge(contract.MetricRowsScoring),
		rows:        histogramVec(contract.MetricRowsPerCall),
		predictions: counterVec(contract.MetricPredictions),
		positives:   counterVec(contract.MetricPositiveLabels),
		probability: histogramVec(contract.MetricPredictedProbability),
		modelLoad:   histogramVec(contract.MetricModelLoad),
		reloads:     counterVec(contract.MetricModelReloads),
		activeModel: gaugeVec(contract.MetricActiveModel),
		serving:     gauge(contract.MetricServing),
	}
	reg.MustRegister(m.latency, m.requests, m.errors, m.inFlight, m.scoring, m.rows, m.predictions, m.positives,
		m.probability, m.modelLoad, m.reloads, m.activeModel, m.serving)
	for _, result := range []string{contract.ResultOk, contract.ResultFailed} { // present from the start: increase() sees the first
		m.reloads.WithLabelValues(result)
	}
	// Predict's outcome series too: a series born at its first failure hides that failure
	// from rate() (the errors SLI missed a first burst of a new code)
	m.requests.WithLabelValues("Predict", "OK")
	for _, kc := range contract.KindCodes {
		m.requests.WithLabelValues("Predict", kc.Code)
		m.errors.WithLabelValues("Predict", kc.Code, kc.Kind)
	}
	return m
}

// The metric families of proto/contract.toml (internal/contract), as the Python server
// registers them.
func counterVec(s contract.MetricSpec) *prometheus.CounterVec {
	mustBe(s, "counter")
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: s.Name, Help: s.Help}, s.Labels)
}

func gaugeVec(s contract.MetricSpec) *prometheus.GaugeVec {
	mustBe(s, "gauge")
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: s.Name, Help: s.Help}, s.Labels)
}

func gauge(s contract.MetricSpec) prometheus.Gauge {
	mustBe(s, "gauge")
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: s.Name, Help: s.Help})
}

// mustBe stops the start (a programming error, caught by every test) when the Go type
// chosen for a family is not the contract's.
func mustBe(s contract.MetricSpec, kind string) {
	if s.Type != kind {
		panic(s.Name + " is a " + s.Type + " in proto/contract.toml, not a " + kind)
	}
}

func histogramVec(s contract.MetricSpec) *prometheus.HistogramVec {
	mustBe(s, "histogram")
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: s.Name, Help: s.Help, Buckets: s.Buckets}, s.Labels)
}

// SetActive leaves only the active artifact's info series.
func (m *Metrics) SetActive(artifact, sha256 string) {
	m.activeModel.Reset()
	m.activeModel.WithLabelValues(artifact, sha256).Set(1)
}

// RecordPredictions counts a batch of answers of artifact (a row is positive at threshold
// or above). One histogram observe per row costs ~20 ns, far below the tree evaluation.
func (m *Metrics) RecordPredictions(artifact string, threshold float32, probs []float32) {
	positives := 0
	hist := m.probability.WithLabelValues(artifact)
	for _, p := range probs {
		if p >= threshold {
			positives++
		}
		hist.Observe(float64(p))
	}
	m.predictions.WithLabelValues(artifact).Add(float64(len(probs)))
	m.positives.WithLabelValues(artifact).Add(float64(positives))
}

// InFlight is method's in-flight gauge: made once per method at registration, so /metrics
// lists every method from the start, as the Python server does.
func (m *Metrics) InFlight(method string) prometheus.Gauge {
	return m.inFlight.WithLabelValues(method)
}

// RecordCall records an ended call: its error (kind "": none), its rows (0: none), its
// latency (with a trace-id exemplar when traceID is set) and its code.
func (m *Metrics) RecordCall(method, artifact, code, kind string, rows int, seconds float64, traceID string) {
	if kind != "" {
		m.errors.WithLabelValues(method, code, kind).Inc()
	}
	if rows > 0 {
		m.rows.WithLabelValues(method).Observe(float64(rows))
	}
	obs := m.latency.WithLabelValues(method, artifact, code)
	if traceID != "" {
		obs.(prometheus.ExemplarObserver).ObserveWithExemplar(seconds, prometheus.Labels{"trace_id": traceID})
	} else {
		obs.Observe(seconds)
	}
	m.requests.WithLabelValues(method, code).Inc()
}

// AddScoring adds rows (negative: removes them) to the rows being run through the trees.
func (m *Metrics) AddScoring(rows int) { m.scoring.Add(float64(rows)) }

// RecordLoad records one verify + load + warm-up of artifact and its result.
func (m *Metrics) RecordLoad(artifact, result string, seconds float64) {
	m.modelLoad.WithLabelValues(artifact, result).Observe(seconds)
}

// RecordReload counts one model switch by its result.
func (m *Metrics) RecordReload(result string) { m.reloads.WithLabelValues(result).Inc() }

// SetServing: 1 while health is SERVING, else 0.
func (m *Metrics) SetServing(on bool) {
	if on {
		m.serving.Set(1)
	} else {
		m.serving.Set(0)
	}
}
