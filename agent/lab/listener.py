"""TCP port 80 on the lab's destination hosts: one helper process, one listening socket per namespace.

A socket stays in the namespace it was created in, so the process enters each destination namespace in
turn, opens a listener there, and serves all of them from one select() loop: every connection gets a
one-line HTTP answer and is closed. The kernel completes handshakes on its own; the loop only keeps the
accept queues from filling up.

Run: python -m agent.lab.listener READY_FILE PORT NAMESPACE...
"""

from __future__ import annotations

import select
import signal
import socket
import sys
from pathlib import Path

from agent.lab import nsutil

ANSWER = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nnkprobe lab\n"


def open_listeners(namespaces: list[str], port: int) -> list[socket.socket]:
    socks = []
    for name in namespaces:
        with nsutil.inside(name):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        sock.listen(256)
        sock.setblocking(False)
        socks.append(sock)
    # Live in the last one so `lab down` can also find us by namespace.
    nsutil.enter(namespaces[-1])
    return socks


def serve(listeners: list[socket.socket]) -> None:
    while True:
        ready, _, _ = select.select(listeners, [], [], None)
        for sock in ready:
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                continue
            try:
                conn.setblocking(False)
                conn.send(ANSWER)
            except OSError:
                pass  # the prober only wanted the handshake and already reset the connection
            finally:
                conn.close()


def main(argv: list[str]) -> int:
    ready_file, port, namespaces = Path(argv[0]), int(argv[1]), argv[2:]

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    listeners = open_listeners(namespaces, port)
    ready_file.write_text("ready\n")
    serve(listeners)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
