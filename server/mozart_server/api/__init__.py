"""The APIs: proto <-> domain conversion and thin servicers, plus interceptors, auth, health."""
