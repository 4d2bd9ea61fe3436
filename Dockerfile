# syntax=docker/dockerfile:1
# The Tollgate operator image: built with the Rust toolchain, run on distroless
# as a non-root user with nothing but the binary and the C runtime
# (glibc, libgcc; TLS is rustls, so no OpenSSL).
#
#   docker build -t ghcr.io/tollgate-dev/tollgate:dev .

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# BuildKit cache mounts keep the crate registry and the target directory
# between builds; the binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tollgate \
 && install -m 0755 target/release/tollgate /tollgate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /tollgate /tollgate
# The distroless "nonroot" user; the chart's securityContext expects 65532.
USER 65532:65532
# 8080: POST /webhook (expose this one); 9090: /metrics, /livez, /readyz (in-cluster).
EXPOSE 8080 9090
ENTRYPOINT ["/tollgate"]
CMD ["run"]
