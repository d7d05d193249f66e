# The Mozart server image: ONNX Runtime and grpcio, never torch.
# Build from the repository root:
#   docker build -f docker/server.Dockerfile -t mozart-server .
# (or: buildah bud --isolation chroot --storage-driver vfs -f docker/server.Dockerfile .)

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
# VERSION: proto/VERSION and server/VERSION link to it (the one version of every distribution).
COPY constraints.txt VERSION ./
COPY proto/ proto/
COPY server/ server/
RUN python -m venv /opt/mozart \
    && /opt/mozart/bin/pip install --no-cache-dir -c constraints.txt ./proto ./server

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --no-create-home mozart
COPY --from=build /opt/mozart /opt/mozart
COPY models/ /models/
ENV PATH=/opt/mozart/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MOZART_MODEL_REPOSITORY=/models \
    MOZART_HOST=0.0.0.0 \
    MOZART_METRICS_HOST=0.0.0.0
USER 10001
# gRPC (mozart.v1, inference v2, health, reflection) and Prometheus metrics.
EXPOSE 8001 8002
# Kubernetes probes the gRPC health service; see k8s/base/deployment.yaml.
ENTRYPOINT ["mozart", "serve"]
