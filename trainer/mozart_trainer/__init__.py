"""Mozart trainer: datasets, the audio CNN, MLflow tracking and ONNX export."""
