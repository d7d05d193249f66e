"""Mozart server: streaming audio classification over gRPC with dynamic batching."""
