"""One exception carrying a gRPC status; the RPC wrapper maps it once.

Every error a call can end with is a constructor in server/contract_gen.py, generated from
proto/contract.toml with its kind (the `type` metric label), code and message template; the
native server's come from the same file.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    def __init__(self, kind: str, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message
