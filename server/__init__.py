"""gRPC serving of compiled artifacts: volatility.v1.Predictor and KServe v2."""
