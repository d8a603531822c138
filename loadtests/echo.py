"""A plain gRPC echo server: the baseline a load benchmark compares jangkau
against. One unary method that answers its request bytes, served the way every
jangkau process serves (a thread pool of JANGKAU_MAX_WORKERS' default size, no
interceptors, no store).

    python -m loadtests.echo 127.0.0.1:0     # prints "listening <port>", stops on SIGTERM

This module does not import Locust, so the server runs on ordinary threads.
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures

import grpc

from jangkau.runtime.config import ENV_VARS

SERVICE = "jangkau.bench.Echo"
METHOD = f"/{SERVICE}/Echo"


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def serve(address: str) -> tuple[grpc.Server, int]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=int(ENV_VARS["JANGKAU_MAX_WORKERS"][0]))
    )
    # No serializers: requests and replies are raw bytes.
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(address)
    server.start()
    return server, port


def main(argv: list[str]) -> int:
    address = argv[0] if argv else "127.0.0.1:0"
    server, port = serve(address)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(f"listening {port}", flush=True)
    done.wait()
    server.stop(1).wait(2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
