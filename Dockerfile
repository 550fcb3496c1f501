FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p weir

FROM debian:bookworm-slim
COPY --from=build /src/target/release/weir /usr/local/bin/weir
ENTRYPOINT ["weir"]
CMD ["serve", "--listen", "0.0.0.0:50051", "--data-dir", "/var/lib/weir"]
