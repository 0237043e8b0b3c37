# The im-server image for compose.yaml: one binary that runs any role
# (--role connector|transfer|rest-api|offline-worker|all).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p im-server -p im-client

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/im-server /usr/local/bin/im-server
COPY --from=build /src/target/release/im /usr/local/bin/im
RUN mkdir -p /data
ENV IM_DATA_DIR=/data
EXPOSE 8080 9000 9001 9100
ENTRYPOINT ["/usr/local/bin/im-server"]
