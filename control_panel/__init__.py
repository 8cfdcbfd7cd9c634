"""Control panel: FastAPI HTTP API + dashboard, and the gRPC Telemetry server that counts accuracy."""
