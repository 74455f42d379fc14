# The GPU worker image: mistral.rs with CUDA kernels.
#   docker build -f deploy/docker/worker-cuda.Dockerfile \
#     --build-arg CUDA_COMPUTE_CAP=80 -t auxot-worker-cuda .
# CUDA_COMPUTE_CAP is the GPUs' compute capability without the dot (80 = A100, 89 = L4/4090,
# 90 = H100). Pick a CUDA_VERSION the nodes' driver supports.
ARG CUDA_VERSION=12.4.1
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu22.04 AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        build-essential ca-certificates curl pkg-config \
    && rm -rf /var/lib/apt/lists/* \
    && curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH
ARG CUDA_COMPUTE_CAP=80
ENV CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP}
WORKDIR /src
COPY . .
RUN cargo build --release -p auxot-worker --features cuda

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu22.04
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/auxot-worker /usr/local/bin/auxot-worker
EXPOSE 7947/udp 7948/udp
ENTRYPOINT ["auxot-worker"]
