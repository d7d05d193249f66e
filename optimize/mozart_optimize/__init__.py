"""Mozart optimizers: ONNX Runtime INT8 and TensorRT engines, gated on accuracy."""
