"""inference.GRPCInferenceService, the Open Inference Protocol v2 (Triton / KServe)."""
