#!/usr/bin/env python3
"""One client process of bench/scaleout.sh: COUNT connections to TARGET from SOURCE (an address
in 127.0.0.0/8), one line each, then held open until SIGTERM or HOLD seconds. Writes the local
address of every connection to ADDRS (one a line) once all are up, so the script can check
that each one reached a server intact."""
import signal
import socket
import sys
import time

target, source, count, addrs_path, hold = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
host, port = target.rsplit(":", 1)
socks = []
deadline = time.time() + hold
for i in range(count):
    for attempt in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((source, 0))
            s.connect((host, int(port)))
            break
        except OSError:
            s.close()
            time.sleep(0.05)
    else:
        sys.exit(f"crowd {source}: connection {i} failed 50 times")
    s.sendall(b"hello from the crowd\n")
    socks.append(s)
with open(addrs_path, "w") as out:
    for s in socks:
        a, p = s.getsockname()
        out.write(f"{a}:{p}\n")
print(f"crowd {source}: {count} up", file=sys.stderr, flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while time.time() < deadline:
    time.sleep(0.5)
