"""Transport-neutral classification: clips, tensors and stream sessions, used by every API."""
