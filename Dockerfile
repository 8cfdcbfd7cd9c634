# One image runs every DiffSem service (transmitter, channel_emulator, receiver, eavesdropper, control_panel);
# docker-compose.yml picks the module per container with `command:`.
#
#   docker build -t diffsem:latest .
#
# torch is pinned to 2.13.0. By default the CPU wheel is installed from PyTorch's CPU index (small image; the
# receiver then runs on the CPU). For the GPU override (docker-compose.gpu.yml) build with a CUDA wheel index:
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t diffsem:gpu .
# Checkpoints and data are NOT baked in: they are mounted read-only by docker-compose.yml.
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    DIFFSEM_DATA_DIR=/data

WORKDIR /app
RUN pip install torch==2.13.0 --index-url "${TORCH_INDEX_URL}"
# The project's own dependencies (torch is already satisfied, so pip does not fetch another build).
COPY pyproject.toml README.md ./
COPY diffsem ./diffsem
COPY protos ./protos
COPY services_common ./services_common
COPY transmitter ./transmitter
COPY channel_emulator ./channel_emulator
COPY receiver ./receiver
COPY eavesdropper ./eavesdropper
COPY control_panel ./control_panel
COPY launcher ./launcher
RUN pip install .

# Unprivileged user; checkpoints (/checkpoints) and data (/data) are read-only mounts.
RUN useradd --create-home --uid 10001 diffsem
USER diffsem

# Every container overrides this with its own module; the healthcheck helper is
# `python -m services_common.healthcheck HOST:PORT` (gRPC health) or `--http URL` (the panel).
CMD ["python", "-m", "launcher", "--help"]
