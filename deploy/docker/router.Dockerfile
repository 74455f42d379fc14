# The router image: `docker build -f deploy/docker/router.Dockerfile -t auxot-router .` from the
# repository root. The router does not link mistral.rs, so this builds in a few minutes.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p auxot-router

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home auxot
COPY --from=build /src/target/release/auxot-router /usr/local/bin/auxot-router
USER 10001
EXPOSE 8080/tcp 7946/udp
ENTRYPOINT ["auxot-router"]
CMD ["serve", "--data-dir", "/etc/auxot/data"]
