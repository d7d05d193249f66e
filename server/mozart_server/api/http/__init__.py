"""The HTTP API: Open Inference Protocol v2 REST, Mozart REST and WebSocket streaming."""
