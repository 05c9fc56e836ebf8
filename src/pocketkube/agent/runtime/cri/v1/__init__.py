"""Generated CRI v1 stubs (api_pb2, api_pb2_grpc) from the vendored api.proto: do not edit,
regenerate with `make cri-stubs` (scripts/gen_cri.py)."""
