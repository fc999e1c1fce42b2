# Builds the chorus binary; docker-compose.yml runs it in the clustered shape.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin chorus

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/chorus /usr/local/bin/chorus
EXPOSE 8080
ENTRYPOINT ["chorus"]
CMD ["serve", "--bind", "0.0.0.0:8080"]
