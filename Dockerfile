# Builds the token service image and the filter module. The gateway file and data live in volumes.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN apt-get update && apt-get install -y --no-install-recommends binaryen && rm -rf /var/lib/apt/lists/* \
 && rustup target add wasm32-wasip1 \
 && ./wasm-build.sh \
 && cargo build --release -p mcpgate-token-service

FROM debian:bookworm-slim AS token-service
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/mcpgate-token-service /usr/local/bin/
ENTRYPOINT ["mcpgate-token-service"]
CMD ["serve", "--config", "/etc/mcpgate/gateway.yaml"]

# The filter module alone, as the single-layer Wasm image Istio and Envoy Gateway pull
# (plugin.wasm at the root). scripts/oci-image.sh (./wasm-build.sh --oci) writes the same format
# reproducibly, without a Docker engine; when pushing this image instead, give `render istio` /
# `render envoy-gateway` its manifest digest with --sha256.
FROM scratch AS filter
COPY --from=build /src/target/wasm32-wasip1/release/mcpgate_filter.wasm /plugin.wasm
