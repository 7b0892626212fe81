# The dedup image: the CLI (`dedup nightly`, `dedup serve`, every job) with its virtualenv, the
# Delta Lake and s3a jars and dlib's model exported to ONNX baked in, so a pod downloads
# nothing at run time. Installation is scripts/setup's, the same as on a developer's machine
# and in CI, at the exact versions of constraints.txt.
#
#   buildah bud -t dedup:dev .        (or: docker build -t dedup:dev .)
#
# The GPU variant, for the Ray GPU workers (ray.gpuWorkers.image): the same file on a CUDA
# runtime base with cuDNN, and scripts/setup's GPU engines (faiss-gpu-cuvs, onnxruntime-gpu):
#
#   buildah bud --build-arg BASE_IMAGE=docker.io/nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#     --build-arg ENGINES=gpu -t dedup:dev-gpu .
#
# The build stage holds Maven and pip's caches; the final stage gets only the Java runtime
# Spark needs, the virtualenv and the fetched artefacts, and runs as an unprivileged user.
# Both stages start from the same base, so the virtualenv's interpreter links stay valid.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
# cpu or gpu: which build of FAISS and ONNX Runtime scripts/setup installs.
ARG ENGINES=cpu

FROM ${BASE_IMAGE} AS build
ARG ENGINES
# A base without Python (the CUDA images) gets the distribution's (3.12 on Ubuntu 24.04).
RUN apt-get update \
 && python=$(command -v python3 >/dev/null || echo "python3 python3-venv") \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      openjdk-17-jre-headless maven curl ca-certificates $python \
 && rm -rf /var/lib/apt/lists/*
ENV XDG_CACHE_HOME=/opt/dedup/cache
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY scripts ./scripts
COPY dedup ./dedup
COPY pipelines ./pipelines
# The lake may live in S3: the s3a jars too, beside the Delta ones scripts/setup fetches.
RUN scripts/setup $([ "$ENGINES" = gpu ] && echo --gpu) && .venv/bin/dedup fetch jars --s3a >/dev/null \
 && rm -rf /opt/dedup/cache/pip /root/.m2 /opt/dedup/cache/portraits

FROM ${BASE_IMAGE}
RUN apt-get update \
 && python=$(command -v python3 >/dev/null || echo "python3") \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      openjdk-17-jre-headless tini $python \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 dedup \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin dedup
# The virtualenv's interpreter links point at the same interpreter in both stages (one base
# image), and its scripts at /app/.venv: the paths must not change.
COPY --from=build --chown=root:root /app /app
COPY --from=build --chown=root:root /opt/dedup/cache /opt/dedup/cache
# HOME and MPLCONFIGDIR in /tmp (an emptyDir under a read-only root filesystem): Ray, Spark
# and matplotlib write their scratch there.
ENV XDG_CACHE_HOME=/opt/dedup/cache \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
# Everything under /app and the cache is read-only to the process; jobs write only to the lake,
# the gallery (its cache: gallery_cache) and their work folders, which the chart mounts.
USER 10001:10001
ENTRYPOINT ["/usr/bin/tini", "--", "dedup"]
CMD ["--help"]
