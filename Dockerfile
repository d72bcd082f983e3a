# syntax=docker/dockerfile:1
#
# kelp's container image.
#   build:   docker build -t kelp:dev .
#   run:     docker run --rm --read-only -p 9092:9092 kelp:dev --listen 0.0.0.0:9092 --backend gateway:9093
#
# Stage 1 compiles a release binary on Debian bookworm. Stage 2 is distroless "cc" (glibc, libgcc, CA
# certificates, tzdata; no shell, no package manager), run as the unprivileged uid/gid 65532. kelp
# writes nothing to disk, so the container works with a read-only root filesystem and every
# capability dropped (deploy/ and helm/kelp run it that way). glibc rather than musl: musl's allocator
# is markedly slower for a proxy that allocates a buffer per frame, and distroless/cc ships glibc.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# The whole context (see .dockerignore): cargo validates every target in Cargo.toml, benches and
# tests included, even when it builds only the binary. Dev-dependencies (rdkafka, cmake) are not built.
COPY . .
# Debug info stays out of the image; symbol names stay in, so panics still name their functions.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin kelp \
 && install -D -m 0755 target/release/kelp /out/kelp

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="kelp" \
      org.opencontainers.image.description="Kafka-protocol sidecar: local consumer-group coordinator in front of the SeaweedFS Kafka gateway" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/kelp /usr/local/bin/kelp
# Numeric, so runAsNonRoot can verify it without an /etc/passwd lookup.
USER 65532:65532
# 9092 client (Kafka protocol), 9094 peers (Kafka protocol, between sidecars), 9100 /metrics /healthz /readyz.
# kelp binds 127.0.0.1 by default; Kubernetes manifests set KELP_METRICS_LISTEN and KELP_PEER_LISTEN.
EXPOSE 9092 9094 9100
# SIGTERM starts kelp's bounded drain (stop accepting, answer what is in flight, close).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/kelp"]
