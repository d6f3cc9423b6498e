#!/usr/bin/env python3
"""silent_node.py NAME — a "node" that registers NAME with the EPMD on
$ERL_EPMD_PORT (ALIVE2_REQ) and accepts distribution connections but never
says a word: the client commands' -timeout must bound the handshake wait.
Prints "ready" once registered; runs until killed."""
import os
import socket
import struct
import sys

name = sys.argv[1].encode()
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
port = listener.getsockname()[1]
epmd = socket.create_connection(("127.0.0.1", int(os.environ["ERL_EPMD_PORT"])))
# ALIVE2_REQ: port, type 77 (normal node), protocol 0 (tcp), versions 6..6
body = struct.pack(">BHBBHHH", 120, port, 77, 0, 6, 6, len(name)) + name + struct.pack(">H", 0)
epmd.sendall(struct.pack(">H", len(body)) + body)
resp = epmd.recv(16)
if len(resp) < 2 or resp[1] != 0:
    sys.exit("silent_node: EPMD refused the registration: %r" % resp)
print("ready", flush=True)
held = []
while True:
    conn, _ = listener.accept()
    held.append(conn)  # kept open, never read from or written to
