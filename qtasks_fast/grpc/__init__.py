"""The gRPC gateway (issue 14): ``qtasks_fast.v1.QTasksFast`` next to QTasks' ``qtasks.v1.QTasksService``.

Needs the ``grpc`` extra. The protocol is ``qtasks_fast/grpc/v1/qtasks_fast.proto`` (shipped in the package, the
generated ``qtasks_fast_pb2``/``qtasks_fast_pb2_grpc`` importable from :mod:`qtasks_fast.grpc.v1`). By surface:
:mod:`~qtasks_fast.grpc.servicer` (each method one call of :mod:`qtasks_fast.service`),
:mod:`~qtasks_fast.grpc.convert` (messages), :mod:`~qtasks_fast.grpc.errors` (status codes),
:mod:`~qtasks_fast.grpc.security` (token, TLS) and :mod:`~qtasks_fast.grpc.server` (the grpc.aio adapter; served by
``qtasks-fast grpc`` and by the gRPC plugins).
"""

from __future__ import annotations

from pathlib import Path

try:
    import google.protobuf  # noqa: F401
    import grpc  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(f"the gRPC gateway needs grpcio and protobuf ({exc}); install qtasks-fast[grpc]") from exc

from qtasks_fast.grpc.v1 import qtasks_fast_pb2, qtasks_fast_pb2_grpc

#: the folder of ``qtasks_fast.proto`` (for clients that load it at run time, such as @grpc/proto-loader)
PROTO_DIR = Path(__file__).parent / "v1"

__all__ = ["PROTO_DIR", "qtasks_fast_pb2", "qtasks_fast_pb2_grpc"]
