# Multi-stage build of the sqljudge service.
FROM rust:1-bookworm AS build
# libpq for diesel; libclang and protoc build pg_query (PostgreSQL's parser, for adequacy mutants).
RUN apt-get update && apt-get install -y --no-install-recommends libpq-dev libclang-dev protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --bin sqljudge

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/target/release/sqljudge /usr/local/bin/sqljudge
COPY config config
COPY demo demo
ENV SQLJUDGE_BIND=0.0.0.0:8080
EXPOSE 8080
CMD ["sqljudge", "serve", "--demo"]
