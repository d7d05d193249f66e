"""The dynamic batcher: windows of every request and stream of one model version, together."""
