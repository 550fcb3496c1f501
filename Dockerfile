# syntax=docker/dockerfile:1
# Weir: one binary (`weir serve | ingest | maintain | import`).
# Build: `docker build -t weir .` (docker-compose.yml builds it as weir:latest).
FROM rust:1.95-bookworm AS build
# librdkafka (Kafka source) is built from source by rdkafka-sys: cmake-free
# build with the OpenSSL headers and a C toolchain (both in the rust image
# except the ones below).
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      pkg-config libssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p weir && cp target/release/weir /usr/local/bin/weir

FROM debian:bookworm-slim
# libssl3 + zlib: linked by librdkafka; ca-certificates: TLS to brokers, S3,
# PostgreSQL; curl: the compose healthchecks (`/ready`).
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      libssl3 zlib1g ca-certificates curl && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/weir --create-home weir
COPY --from=build /usr/local/bin/weir /usr/local/bin/weir
USER weir
WORKDIR /var/lib/weir
EXPOSE 50051 9090
ENTRYPOINT ["weir"]
CMD ["serve", "--listen", "0.0.0.0:50051", "--data-dir", "/var/lib/weir"]
