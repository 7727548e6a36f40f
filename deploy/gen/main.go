// Command gen renders volspike's Kubernetes manifests (deploy/rendered/*.yaml) from typed API
// structs: k8s.io/api (apps/v1, core/v1, policy/v1, autoscaling/v2), KEDA's ScaledObject
// (github.com/kedacore/keda/v2/apis/keda/v1alpha1) and prometheus-operator's ServiceMonitor and
// PrometheusRule (pkg/apis/monitoring/v1). The PrometheusRule's groups are read from
// observability/prometheus/rules/volspike.rules.yml (generated from observability/slo.toml), and
// the model config ConfigMap from config/model.toml, so both stay one source.
//
//	go run ./deploy/gen             (from deploy/gen: go run . -root ../..) writes deploy/rendered
//	go run ./deploy/gen -check      exits 1 naming every stale, missing or extra file
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// Settings shared with the servers and the consumer (config/settings.toml defaults).
const (
	namespace = "volspike"
	image     = "volspike:latest" // the repo's Dockerfile: server, consumer and artifacts in one image

	serverName   = "volspike-server" // also the Prometheus job label the rules select
	consumerName = "volspike-consumer"
	modelConfig  = "volspike-model-config"

	grpcPort            = 50051 // plaintext gRPC, also the grpc.health.v1 probe port
	serverMetricsPort   = 8000
	consumerMetricsPort = 8001

	// The server drains on SIGTERM within graceSeconds (NOT_SERVING at once, in-flight calls
	// finish). preStop sleeps first so the endpoint leaves DNS before the drain starts; the
	// pod's termination grace covers both plus a margin.
	graceSeconds           = 10
	preStopSleepSeconds    = 5
	terminationMargin      = 5
	maxConnectionAgeSecs   = 60
	predictorService       = "volatility.v1.Predictor"
	modelConfigMountPath   = "/etc/volspike/model"
	modelsDir              = "/app/compiled_models"
	ticksTopic             = "ticks"
	ticksTopicPartitions   = 4 // tools/kafka_broker.py num.partitions; KEDA caps replicas at this
	consumerGroup          = "volspike-consumer"
	kafkaBootstrap         = "kafka.volspike.svc:9092"
	lagThresholdPerReplica = "5000" // ticks of lag each consumer replica is expected to absorb
	serverMinReplicas      = 2
	serverMaxReplicas      = 8
	serverCPUTargetPct     = 70
)

func labels(component string) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":    component,
		"app.kubernetes.io/part-of": "volspike",
	}
}

func selector(component string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": component}
}

func meta(name string, l map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: l}
}

func ptr[T any](v T) *T { return &v }

func grpcProbe(service string, period, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: grpcPort, Service: ptr(service)}},
		PeriodSeconds:    period,
		FailureThreshold: failures,
		TimeoutSeconds:   1,
	}
}

func namespaceObj() *corev1.Namespace {
	return &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: namespace, Labels: map[string]string{"app.kubernetes.io/part-of": "volspike"}},
	}
}

func modelConfigMap(toml string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: meta(modelConfig, labels(serverName)),
		Data:       map[string]string{"model.toml": toml},
	}
}

func serverDeployment() *appsv1.Deployment {
	args := []string{
		"--host", "0.0.0.0",
		"--port", fmt.Sprint(grpcPort),
		"--metrics-port", fmt.Sprint(serverMetricsPort),
		"--model-config", modelConfigMountPath + "/model.toml",
		"--models-dir", modelsDir,
		"--grace-seconds", fmt.Sprint(graceSeconds),
		"--max-connection-age-seconds", fmt.Sprint(maxConnectionAgeSecs),
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta(serverName, labels(serverName)),
		Spec: appsv1.DeploymentSpec{
			// No replicas: the HPA owns them (a re-apply never resets its count).
			Selector: &metav1.LabelSelector{MatchLabels: selector(serverName)},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr(intstr.FromInt32(0)),
					MaxSurge:       ptr(intstr.FromInt32(1)),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels(serverName)},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr(int64(preStopSleepSeconds + graceSeconds + terminationMargin)),
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
							Weight: 100,
							PodAffinityTerm: corev1.PodAffinityTerm{
								LabelSelector: &metav1.LabelSelector{MatchLabels: selector(serverName)},
								TopologyKey:   "kubernetes.io/hostname",
							},
						}},
					}},
					Containers: []corev1.Container{{
						Name:    "server",
						Image:   image,
						Command: []string{"server/native/volspike-server"},
						Args:    args,
						Ports: []corev1.ContainerPort{
							{Name: "grpc", ContainerPort: grpcPort, Protocol: corev1.ProtocolTCP},
							{Name: "metrics", ContainerPort: serverMetricsPort, Protocol: corev1.ProtocolTCP},
						},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{
								corev1.ResourceCPU:    resource.MustParse("1"),
								corev1.ResourceMemory: resource.MustParse("512Mi"),
							},
							Limits: corev1.ResourceList{
								corev1.ResourceCPU:    resource.MustParse("2"),
								corev1.ResourceMemory: resource.MustParse("1Gi"),
							},
						},
						// Native gRPC probes dial plaintext on a numeric port. Startup and
						// readiness ask for the Predictor service (SERVING once an artifact is
						// verified, loaded and warmed; NOT_SERVING at once on SIGTERM); liveness
						// asks for the server as a whole.
						StartupProbe:   grpcProbe(predictorService, 2, 60),
						ReadinessProbe: grpcProbe(predictorService, 2, 1),
						LivenessProbe:  grpcProbe("", 10, 3),
						Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
							Sleep: &corev1.SleepAction{Seconds: preStopSleepSeconds},
						}},
						VolumeMounts: []corev1.VolumeMount{{
							// The folder, not a subPath: the kubelet swaps the ConfigMap's files
							// atomically and the server sees the new mtime (1 s poll).
							Name: "model-config", MountPath: modelConfigMountPath, ReadOnly: true,
						}},
						SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false)},
					}},
					Volumes: []corev1.Volume{{
						Name: "model-config",
						VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: modelConfig},
						}},
					}},
				},
			},
		},
	}
}

func headlessService(name string, ports []corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta(name, labels(name)),
		Spec: corev1.ServiceSpec{
			// Headless: DNS answers every ready pod's address, and the client balances per
			// call over them (grpc round_robin; a plain ClusterIP pins a connection to a pod).
			ClusterIP: corev1.ClusterIPNone,
			Selector:  selector(name),
			Ports:     ports,
		},
	}
}

func serverService() *corev1.Service {
	return headlessService(serverName, []corev1.ServicePort{
		{Name: "grpc", Port: grpcPort, TargetPort: intstr.FromString("grpc"), AppProtocol: ptr("grpc")},
		{Name: "metrics", Port: serverMetricsPort, TargetPort: intstr.FromString("metrics")},
	})
}

func consumerService() *corev1.Service {
	return headlessService(consumerName, []corev1.ServicePort{
		{Name: "metrics", Port: consumerMetricsPort, TargetPort: intstr.FromString("metrics")},
	})
}

func serverPDB() *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: meta(serverName, labels(serverName)),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable:             ptr(intstr.FromInt32(1)),
			Selector:                   &metav1.LabelSelector{MatchLabels: selector(serverName)},
			UnhealthyPodEvictionPolicy: ptr(policyv1.AlwaysAllow),
		},
	}
}

func serverHPA() *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: meta(serverName, labels(serverName)),
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: serverName},
			MinReplicas:    ptr(int32(serverMinReplicas)),
			MaxReplicas:    serverMaxReplicas,
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricSource{
					Name: corev1.ResourceCPU,
					Target: autoscalingv2.MetricTarget{
						Type:               autoscalingv2.UtilizationMetricType,
						AverageUtilization: ptr(int32(serverCPUTargetPct)),
					},
				},
			}},
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{
				ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr(int32(300))},
			},
		},
	}
}

func consumerDeployment() *appsv1.Deployment {
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta(consumerName, labels(consumerName)),
		Spec: appsv1.DeploymentSpec{
			// No replicas: KEDA's ScaledObject owns them (one per `lagThreshold` of lag).
			Selector: &metav1.LabelSelector{MatchLabels: selector(consumerName)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels(consumerName)},
				Spec: corev1.PodSpec{
					// The consumer commits only answered offsets: a stop loses nothing.
					TerminationGracePeriodSeconds: ptr(int64(30)),
					Containers: []corev1.Container{{
						Name:    "consumer",
						Image:   image,
						Command: []string{"python", "-m", "consumer"},
						Args: []string{
							"--bootstrap", kafkaBootstrap,
							"--group-id", consumerGroup,
							"--ticks-topic", ticksTopic,
							"--server", fmt.Sprintf("dns:///%s.%s.svc:%d", serverName, namespace, grpcPort),
							"--metrics-host", "0.0.0.0",
							"--metrics-port", fmt.Sprint(consumerMetricsPort),
						},
						Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: consumerMetricsPort, Protocol: corev1.ProtocolTCP}},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{
								corev1.ResourceCPU:    resource.MustParse("500m"),
								corev1.ResourceMemory: resource.MustParse("512Mi"),
							},
							Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
						},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
								Path: "/metrics", Port: intstr.FromInt32(consumerMetricsPort),
							}},
							PeriodSeconds: 10,
						},
						SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false)},
					}},
				},
			},
		},
	}
}

func consumerScaledObject() *kedav1alpha1.ScaledObject {
	return &kedav1alpha1.ScaledObject{
		TypeMeta:   metav1.TypeMeta{APIVersion: "keda.sh/v1alpha1", Kind: "ScaledObject"},
		ObjectMeta: meta(consumerName, labels(consumerName)),
		Spec: kedav1alpha1.ScaledObjectSpec{
			ScaleTargetRef:  &kedav1alpha1.ScaleTarget{APIVersion: "apps/v1", Kind: "Deployment", Name: consumerName},
			PollingInterval: ptr(int32(15)),
			CooldownPeriod:  ptr(int32(300)),
			MinReplicaCount: ptr(int32(1)),
			// A consumer beyond the topic's partitions would sit idle.
			MaxReplicaCount: ptr(int32(ticksTopicPartitions)),
			Triggers: []kedav1alpha1.ScaleTriggers{{
				Type: "kafka",
				Metadata: map[string]string{
					"bootstrapServers":   kafkaBootstrap,
					"consumerGroup":      consumerGroup,
					"topic":              ticksTopic,
					"lagThreshold":       lagThresholdPerReplica,
					"offsetResetPolicy":  "latest",
					"allowIdleConsumers": "false",
				},
			}},
		},
	}
}

func serviceMonitor() *monitoringv1.ServiceMonitor {
	ep := func() monitoringv1.Endpoint {
		return monitoringv1.Endpoint{Port: "metrics", Path: "/metrics", Interval: "15s"}
	}
	return &monitoringv1.ServiceMonitor{
		TypeMeta:   metav1.TypeMeta{APIVersion: "monitoring.coreos.com/v1", Kind: "ServiceMonitor"},
		ObjectMeta: meta("volspike", map[string]string{"app.kubernetes.io/part-of": "volspike"}),
		Spec: monitoringv1.ServiceMonitorSpec{
			// Prometheus's job label is the Service's name: volspike-server and
			// volspike-consumer, the jobs the rules select.
			Selector: metav1.LabelSelector{
				MatchLabels: map[string]string{"app.kubernetes.io/part-of": "volspike"},
				MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: "app.kubernetes.io/name", Operator: metav1.LabelSelectorOpIn,
					Values: []string{serverName, consumerName},
				}},
			},
			Endpoints: []monitoringv1.Endpoint{ep()},
		},
	}
}

// rulesFile is the Prometheus rules file's shape; strict decoding refuses any key the
// PrometheusRule type would drop.
type rulesFile struct {
	Groups []monitoringv1.RuleGroup `json:"groups"`
}

func prometheusRule(rulesYAML []byte) (*monitoringv1.PrometheusRule, error) {
	var f rulesFile
	if err := yaml.UnmarshalStrict(rulesYAML, &f); err != nil {
		return nil, fmt.Errorf("rules file: %w", err)
	}
	if len(f.Groups) == 0 {
		return nil, fmt.Errorf("rules file: no groups")
	}
	return &monitoringv1.PrometheusRule{
		TypeMeta:   metav1.TypeMeta{APIVersion: "monitoring.coreos.com/v1", Kind: "PrometheusRule"},
		ObjectMeta: meta("volspike", map[string]string{"app.kubernetes.io/part-of": "volspike"}),
		Spec:       monitoringv1.PrometheusRuleSpec{Groups: f.Groups},
	}, nil
}

// toYAML turns a typed object into YAML without the fields the API server owns (status,
// a null creationTimestamp), keys sorted.
func toYAML(obj runtime.Object) ([]byte, error) {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	delete(u, "status")
	prune(u)
	return yaml.Marshal(u)
}

// prune drops null creationTimestamps and empty maps the converter leaves behind.
func prune(m map[string]any) {
	for k, v := range m {
		switch x := v.(type) {
		case nil:
			if k == "creationTimestamp" {
				delete(m, k)
			}
		case map[string]any:
			prune(x)
			if len(x) == 0 && (k == "resources" || k == "strategy" || k == "metadata") {
				delete(m, k)
			}
		case []any:
			for _, e := range x {
				if em, ok := e.(map[string]any); ok {
					prune(em)
				}
			}
		}
	}
}

const header = "# Generated by deploy/gen from typed API structs (make deploy); do not edit.\n"

func render(root string) (map[string][]byte, error) {
	toml, err := os.ReadFile(filepath.Join(root, "config/model.toml"))
	if err != nil {
		return nil, err
	}
	rules, err := os.ReadFile(filepath.Join(root, "observability/prometheus/rules/volspike.rules.yml"))
	if err != nil {
		return nil, err
	}
	pr, err := prometheusRule(rules)
	if err != nil {
		return nil, err
	}
	objs := []struct {
		file string
		obj  runtime.Object
	}{
		{"00-namespace.yaml", namespaceObj()},
		{"10-model-config.yaml", modelConfigMap(string(toml))},
		{"20-server-deployment.yaml", serverDeployment()},
		{"21-server-service.yaml", serverService()},
		{"22-server-pdb.yaml", serverPDB()},
		{"23-server-hpa.yaml", serverHPA()},
		{"30-consumer-deployment.yaml", consumerDeployment()},
		{"31-consumer-service.yaml", consumerService()},
		{"32-consumer-scaledobject.yaml", consumerScaledObject()},
		{"40-servicemonitor.yaml", serviceMonitor()},
		{"41-prometheusrule.yaml", pr},
	}
	out := map[string][]byte{}
	for _, o := range objs {
		b, err := toYAML(o.obj)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.file, err)
		}
		out[o.file] = append([]byte(header), b...)
	}
	return out, nil
}

func main() {
	root := flag.String("root", ".", "repository root")
	check := flag.Bool("check", false, "compare with deploy/rendered instead of writing; exit 1 when stale")
	flag.Parse()
	files, err := render(*root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploy/gen:", err)
		os.Exit(2)
	}
	dir := filepath.Join(*root, "deploy/rendered")
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	if *check {
		var stale []string
		for _, n := range names {
			have, err := os.ReadFile(filepath.Join(dir, n))
			if err != nil || !bytes.Equal(have, files[n]) {
				stale = append(stale, n)
			}
		}
		existing, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, p := range existing {
			if _, ok := files[filepath.Base(p)]; !ok {
				stale = append(stale, filepath.Base(p)+" (not generated)")
			}
		}
		if len(stale) > 0 {
			fmt.Fprintf(os.Stderr, "deploy/rendered is stale: %s; run make deploy\n", strings.Join(stale, ", "))
			os.Exit(1)
		}
		fmt.Printf("deploy/rendered up to date (%d files)\n", len(names))
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "deploy/gen:", err)
		os.Exit(2)
	}
	existing, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, p := range existing {
		if !slices.Contains(names, filepath.Base(p)) {
			_ = os.Remove(p)
		}
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), files[n], 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "deploy/gen:", err)
			os.Exit(2)
		}
	}
	fmt.Printf("wrote %d files to %s\n", len(names), dir)
}
