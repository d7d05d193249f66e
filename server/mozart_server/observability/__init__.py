"""Logs, metrics and the context of the call being served; imported by every layer above."""
