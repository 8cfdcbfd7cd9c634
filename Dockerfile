# One image runs every DiffSem service (transmitter, channel_emulator, receiver, eavesdropper, control_panel, the
# tap gateway and compose's init services); docker-compose.yml picks the module per container with `command:`.
#
#   docker compose build                                        # or: docker build -t diffsem:latest .
#   scripts/wheels && DIFFSEM_PIP_OFFLINE=1 docker compose build   # offline / air-gapped: wheels from wheels/
#
# Build arguments:
#   BASE_IMAGE       python:3.11-slim, or any Debian-based image with python3 (3.11), venv and pip, e.g. the one
#                    scripts/base-image makes with debootstrap where no registry is reachable
#   PIP_OFFLINE      1: install only from wheels/ (filled by scripts/wheels), no network at all
#   TORCH_INDEX_URL  where the online build takes torch 2.13.0: PyTorch's CPU index (small image; the receiver then
#                    runs on the CPU); https://download.pytorch.org/whl/cu128 for the GPU override
# wheels/pip-ca.pem (scripts/wheels --ca FILE), when present, is the certificate authority pip trusts in an online
# build behind a re-signing proxy. wheels/ is copied into the build stage only: neither the wheels nor that
# certificate reach the final image, which holds the base, one virtual environment (/opt/diffsem) and a user.
# Checkpoints, data and credentials are NOT baked in: docker-compose.yml mounts them.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG PIP_OFFLINE=0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PYTHONDONTWRITEBYTECODE=1
COPY wheels/ /wheels/
COPY scripts/pip-source /usr/local/bin/diffsem-pip-source
# Fails here, in seconds, when the chosen source cannot serve torch (no network and no wheels/), saying what to do.
RUN diffsem-pip-source check
RUN python3 -m venv /opt/diffsem
ENV PATH=/opt/diffsem/bin:$PATH
# Dependencies first (the runtime lock, requirements.lock: every version and file hash pinned, never the dev
# extras), so code, README and pyproject changes reuse this layer.
COPY requirements.lock /src/
RUN diffsem-pip-source install-deps /src/requirements.lock \
    # h5py (17 MB): sionna-no-rt declares it, but none of Sionna's modules imports it
    && pip uninstall -y -q h5py \
    # C++ unit tests, headers and a protoc that torch ships for extension builders; no service runs them.
    && cd /opt/diffsem/lib/python3.11/site-packages/torch \
    && rm -rf test include bin/protoc* bin/test_* bin/*Test bin/*.pt bin/*.ptl \
    # the packages' own test suites, and all bytecode (compiled again below for what the services import)
    && find /opt/diffsem -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} +
COPY diffsem /src/diffsem
COPY protos /src/protos
COPY services_common /src/services_common
COPY transmitter /src/transmitter
COPY channel_emulator /src/channel_emulator
COPY receiver /src/receiver
COPY eavesdropper /src/eavesdropper
COPY control_panel /src/control_panel
COPY launcher /src/launcher
COPY pyproject.toml README.md /src/
# Bytecode only for the modules the services import when they start: fast start-up without ~250 MB of .pyc files
# for code that never runs (tests/test_dockerfile.py keeps this list equal to the services' entry points).
RUN pip install --no-deps --no-build-isolation --no-compile /src \
    && cd / && PYTHONDONTWRITEBYTECODE= python -c "import transmitter.__main__, channel_emulator.__main__, \
receiver.__main__, eavesdropper.__main__, control_panel.__main__, launcher.__main__, services_common.healthcheck, \
services_common.gateway, diffsem.cli"

FROM ${BASE_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/diffsem/bin:$PATH \
    DIFFSEM_DATA_DIR=/data
COPY --from=build /opt/diffsem /opt/diffsem
COPY scripts/container-entrypoint /usr/local/bin/diffsem-entrypoint
COPY scripts/compose-credentials /usr/local/bin/diffsem-compose-credentials
# Unprivileged user. /data, /credentials, /var/lib/diffsem (the panel's database) and /tap (the gateway's sockets)
# belong to it, so a fresh named volume mounted there (which takes the image's owner) is writable by compose's init
# services, the panel and the gateway. No file keeps a setuid or setgid bit (su, passwd, mount, ...): nothing in a
# container can gain privileges by exec, whatever compose's no-new-privileges says (tests/compose/ checks both).
RUN useradd --create-home --uid 10001 diffsem && mkdir -p /data /credentials /var/lib/diffsem /tap \
    && chown diffsem:diffsem /data /credentials /var/lib/diffsem /tap \
    && find / -xdev -type f -perm /6000 -exec chmod ug-s {} +
USER diffsem
WORKDIR /home/diffsem

# Every container overrides the command with its own module; the healthcheck helper is
# `python -m services_common.healthcheck HOST:PORT` (gRPC health) or `--http URL` (the panel).
ENTRYPOINT ["diffsem-entrypoint"]
CMD ["python", "-m", "launcher", "--help"]
