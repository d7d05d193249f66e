"""Shared test helpers: a tiny ONNX model builder, test audio, and a real-server harness."""
