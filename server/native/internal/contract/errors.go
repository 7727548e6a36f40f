// Package contract is the serving contract of proto/contract.toml as Go: the errors (each a
// ServiceError with its gRPC code and kind), the metric families, the limits, the label
// values, the texts and the KServe and manifest constants (contract_gen.go, written by
// python -m tools.gen_schema), and how names are spelled inside messages. It imports
// nothing of ours; every other package of the server may import it.
package contract

import grpccodes "google.golang.org/grpc/codes"

// ServiceError carries the gRPC status of a failed call; the interceptors map it once.
type ServiceError struct {
	Code grpccodes.Code
	Kind string // error type label, e.g. InvalidArgument
	Msg  string
}

func (e *ServiceError) Error() string { return e.Msg }
