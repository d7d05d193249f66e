"""Mozart's gRPC contract: generated stubs for mozart.v1 and the Open Inference Protocol v2."""
