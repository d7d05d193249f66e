"""Mozart server: streaming audio classification over gRPC with dynamic batching."""

from importlib.metadata import PackageNotFoundError, version


def server_version() -> str:
    """The installed mozart-server's version (the repository's VERSION file)."""
    try:
        return version("mozart-server")
    except PackageNotFoundError:
        return "0+unknown"
