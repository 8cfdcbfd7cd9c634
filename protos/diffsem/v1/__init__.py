"""Generated gRPC/protobuf code for package ``diffsem.v1`` (run ``python protos/generate.py`` to refresh)."""
