"""Model versions: the repository on disk, loading and warm-up, the live registry, control."""
