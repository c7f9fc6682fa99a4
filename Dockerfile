# pgqd image: the daemon built from this tree on Debian 12.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin pgqd

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/pgqd /usr/local/bin/pgqd
COPY config/pgqd.toml /etc/pgqd/pgqd.toml
USER nobody
ENTRYPOINT ["/usr/local/bin/pgqd"]
CMD ["--config", "/etc/pgqd/pgqd.toml"]
