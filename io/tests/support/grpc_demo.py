"""A gRPC service and its client for the HTTP/2 test, on grpcio (PyPI) over plaintext
HTTP/2 (h2c) on loopback. Messages are raw bytes: no generated code is needed.

  grpc_demo.py server          serves demo.Greeter/SayHello on a free port, prints it
  grpc_demo.py client PORT     3 OK calls, 1 NOT_FOUND, 1 OK call carrying `traceparent`
                               (argument 3) in its metadata, all on one channel
"""
import sys
import time
from concurrent import futures

import grpc


def say_hello(request, context):
    if request == b"missing":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such greeting")
    return b"hello " + request


def serve():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "demo.Greeter", {"SayHello": grpc.unary_unary_rpc_method_handler(say_hello)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


def client(port, traceparent):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/demo.Greeter/SayHello")
        for i in range(3):
            assert call(b"world %d" % i, timeout=10) == b"hello world %d" % i
        try:
            call(b"missing", timeout=10)
            raise SystemExit("the missing greeting was found")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e.code()
        call(b"traced", timeout=10, metadata=(("traceparent", traceparent),))
        # Let the last frames (window updates, pings) cross before the channel closes.
        time.sleep(0.2)


if sys.argv[1] == "server":
    serve()
else:
    client(int(sys.argv[2]), sys.argv[3])
