# Multi-stage build of the tenantpool binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin tenantpool

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 tenantpool
COPY --from=build /src/target/release/tenantpool /usr/local/bin/tenantpool
COPY config/docker/tenantpool.toml /etc/tenantpool/tenantpool.toml
USER tenantpool
EXPOSE 6432 9930
ENTRYPOINT ["/usr/local/bin/tenantpool"]
CMD ["--config", "/etc/tenantpool/tenantpool.toml"]
