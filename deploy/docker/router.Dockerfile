# The router image: `docker build -f deploy/docker/router.Dockerfile -t auxot-router .` from the
# repository root. The router does not link mistral.rs, so this builds in a few minutes.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p auxot-router

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home auxot \
    && mkdir -p /var/lib/auxot /var/lib/auxot-join \
    && chown 10001:10001 /var/lib/auxot /var/lib/auxot-join
COPY --from=build /src/target/release/auxot-router /usr/local/bin/auxot-router
USER 10001
EXPOSE 8080/tcp 7946/udp 9464/tcp
ENTRYPOINT ["auxot-router"]
CMD ["serve", "--data-dir", "/etc/auxot/data"]
