"""Serve a GGUF model over HTTP as an OpenAI-compatible server on a loopback port, in its own process.

Run by tests/test_http_endpoint.py as `python tests/openai_server.py GGUF PORT NAME PARALLEL`: it prints
"listening URL" once llama.cpp's HTTP server accepts requests, then serves until it is terminated. A separate
process, so the test can stop it for sure (terminate, then kill) however the test ends.
"""

from __future__ import annotations

import signal
import sys
import threading


def serve(gguf: str, port: int, name: str, parallel: int) -> None:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = gguf
    params.model_alias = {name}  # the name clients send as `model`
    params.hostnames = ["127.0.0.1"]  # loopback only
    params.port = port
    params.n_parallel = parallel
    params.n_ctx = 4096 * parallel  # llama.cpp divides the context among the slots
    params.cpuparams.n_threads = 2
    params.cpuparams_batch.n_threads = 2
    params.warmup = False
    params.verbosity = -1
    server = xllamacpp.Server(params)
    print(f"listening {server.listening_address}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()  # the HTTP server runs on llama.cpp's own threads; this one only waits for SIGTERM
    del server


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
