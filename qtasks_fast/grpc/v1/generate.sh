#!/usr/bin/env bash
# Regenerate qtasks_fast_pb2.py, qtasks_fast_pb2.pyi and qtasks_fast_pb2_grpc.py from qtasks_fast.proto (dev time
# only: needs grpcio-tools; the generated modules are committed). The grpc module's absolute import of
# qtasks_fast_pb2 is made relative so the package can live anywhere.
set -euo pipefail
cd "$(dirname "$0")"
python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. qtasks_fast.proto
sed -i 's/^import qtasks_fast_pb2 as qtasks__fast__pb2$/from . import qtasks_fast_pb2 as qtasks__fast__pb2/' \
  qtasks_fast_pb2_grpc.py
