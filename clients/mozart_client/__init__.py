"""Mozart Python SDK: classify clips and stream live audio to a Mozart server."""
