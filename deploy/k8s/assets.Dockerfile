# The assets image for Kubernetes (deploy/k8s/): the committed checkpoints and the data files, no code. Each pod's
# init container copies from it what that role may read (base/*.yaml, eavesdropper/eavesdropper.yaml).
#
#   DIFFSEM_DATA_DIR=./data .venv/bin/diffsem data fetch mnist        # fill ./data first (checked by SHA-256)
#   docker build -f deploy/k8s/assets.Dockerfile -t diffsem-assets .
FROM busybox:1.36.1
COPY checkpoints/ /assets/checkpoints/
COPY data/ /assets/data/
USER 10001:10001
