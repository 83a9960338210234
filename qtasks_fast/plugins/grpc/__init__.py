"""QTasks' ``qtasks.plugins.grpc``: the gRPC plugins and the generated ``qtasks.v1`` modules.

Needs the ``grpc`` extra (``pip install 'qtasks-fast[grpc]'``); see :mod:`qtasks_fast.plugins.grpc.server`.
"""

try:
    import google.protobuf  # noqa: F401
    import grpc  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(f"the gRPC plugin needs grpcio and protobuf ({exc}); install qtasks-fast[grpc]") from exc

from qtasks_fast.plugins.grpc.core import qtasks_pb2, qtasks_pb2_grpc
from qtasks_fast.plugins.grpc.server import AsyncgRPCPlugin, SyncgRPCPlugin

__all__ = ["AsyncgRPCPlugin", "SyncgRPCPlugin", "qtasks_pb2", "qtasks_pb2_grpc"]
