# The CUDA worker image: `ablate worker` (a Celery prefork worker) that trains runs on one GPU.
#
#   docker build -t ablate-worker .
#   docker run --gpus 1 -e ABLATE_BROKER_URL=... -e ABLATE_STORE=s3://... ablate-worker
#
# Base image: python:3.11-slim, with TensorFlow's GPU build from pip ("tensorflow[and-cuda]").
# This is the installation TensorFlow documents for Linux GPUs: the pip extra brings CUDA, cuDNN,
# cuBLAS, NCCL and ptxas as NVIDIA wheels, so the image needs no CUDA base image and only the
# host's NVIDIA driver (with the NVIDIA container toolkit; minimum driver versions are in
# infra/constraints-cuda.txt). The extra asks for version ranges: the wheels are pinned to the
# versions TensorFlow was built with by infra/constraints-cuda.txt. It
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
# Small CNNs: a run takes the GPU memory it uses instead of reserving all of it (with several runs
# per GPU, --runs-per-gpu, each process is also capped: ABLATE_GPU_MEMORY_MB, see the README).
ENV TF_FORCE_GPU_ALLOW_GROWTH=true
# CUDA's JIT cache: on GPUs this TensorFlow has no machine code for (Hopper and newer) every
# kernel is compiled from PTX at start, minutes in each training process. Compose and Kubernetes
# mount a volume here that outlives the container, so that only the first start compiles. 4 GiB
# is the largest cache CUDA allows (TensorFlow's kernels exceed the default).
ENV CUDA_CACHE_PATH=/var/cache/ablate/cuda \
    CUDA_CACHE_MAXSIZE=4294967296
# XLA (Keras' jit_compile) looks for ptxas on PATH; the nvidia-cuda-nvcc wheel ships it here.
ENV PATH=/usr/local/lib/python3.11/site-packages/nvidia/cuda_nvcc/bin:$PATH

RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin ablate

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that editing service/ or workers/ reuses this
# (multi-gigabyte) layer: the project's dependencies plus its `worker` extra, with TensorFlow's
# CUDA extra on top.
COPY pyproject.toml infra/constraints-cuda.txt ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['worker']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -c constraints-cuda.txt -r /tmp/requirements.txt "tensorflow[and-cuda]==${TENSORFLOW_VERSION}" \
    && rm /tmp/requirements.txt

# Then the project itself, without touching the dependencies installed above.
COPY README.md ./
COPY service/ service/
COPY workers/ workers/
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info \
    && install -d -o 10001 -g 10001 /var/cache/ablate /var/cache/ablate/cuda
# The one-shot GPU check an operator runs in this image on a new host (README, "GPU workers"):
#   docker run --rm --gpus all IMAGE python -m bench.gpu_check
COPY bench/gpu_check.py bench/gpu_check_run.py bench/gpu_packing.py bench/
COPY examples/seed-study.yaml examples/

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
