# The CUDA worker image: `ablate worker` (a Celery prefork worker) that trains runs on one GPU.
#
#   docker build -t ablate-worker .
#   docker run --gpus 1 -e ABLATE_BROKER_URL=... -e ABLATE_STORE=s3://... ablate-worker
#
# Base image: python:3.11-slim, with TensorFlow's GPU build from pip ("tensorflow[and-cuda]").
# This is the installation TensorFlow documents for Linux GPUs: the pip extra brings CUDA, cuDNN,
# cuBLAS, NCCL and ptxas as NVIDIA wheels matched to that TensorFlow release, so the image needs
# no CUDA base image and only the host's NVIDIA driver (with the NVIDIA container toolkit). It
# keeps TensorFlow's and Python's versions the ones pyproject.toml and the test suite use, where
# tensorflow/tensorflow:*-gpu would pin its own Ubuntu Python and a preinstalled TensorFlow.
FROM python:3.11.15-slim-bookworm

# The TensorFlow release the image is built and tested with (pyproject.toml allows >=2.18).
ARG TENSORFLOW_VERSION=2.21.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ABLATE_LOG_FORMAT=json \
    ABLATE_DATA_ROOTS=/data
# The NVIDIA container toolkit mounts the driver's compute libraries only when asked to.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility
# Small CNNs: let several runs (--runs-per-gpu, or replicas on one GPU) share a GPU instead of the
# first TensorFlow process reserving all of its memory (with several runs per GPU each process is
# also capped: ABLATE_GPU_MEMORY_MB, see the README).
ENV TF_FORCE_GPU_ALLOW_GROWTH=true
# XLA (Keras' jit_compile) looks for ptxas on PATH; the nvidia-cuda-nvcc wheel ships it here.
ENV PATH=/usr/local/lib/python3.11/site-packages/nvidia/cuda_nvcc/bin:$PATH

RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin ablate

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that editing service/ or workers/ reuses this
# (multi-gigabyte) layer: the project's dependencies plus its `worker` extra, with TensorFlow's
# CUDA extra on top.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['worker']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt "tensorflow[and-cuda]==${TENSORFLOW_VERSION}" \
    && rm /tmp/requirements.txt

# Then the project itself, without touching the dependencies installed above.
COPY README.md ./
COPY service/ service/
COPY workers/ workers/
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info

# Numeric, so that runtimes can verify it is not root (Kubernetes: runAsNonRoot).
USER 10001:10001

# SIGTERM is Celery's warm shutdown: take no new run, finish the running one. A stop that outlasts
# the grace period (compose: stop_grace_period) ends in SIGKILL, which loses at most the current
# epoch: Redis delivers the unacknowledged run again (after ABLATE_VISIBILITY_TIMEOUT) and it
# resumes from its last checkpoint.
STOPSIGNAL SIGTERM

# The node name is fixed (ablate@<container hostname>) so that the health check can ping exactly
# this worker; arguments given to `docker run` / compose `command:` are appended.
ENTRYPOINT ["ablate", "worker", "--hostname=ablate@%h"]

# Healthy = this worker answers a ping through the broker. The Celery parent process answers, also
# while its pool process trains; it never imports TensorFlow, so it is up within seconds and the
# start period only covers waiting for Redis.
HEALTHCHECK --interval=60s --timeout=30s --start-period=60s --retries=3 \
    CMD ["/bin/sh", "-c", "celery -A workers.app inspect ping --destination \"ablate@$HOSTNAME\" --timeout 10 || exit 1"]
