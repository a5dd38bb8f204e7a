"""A body of any size sent over a plain socket, reading the answer whatever the server does
with the rest of it: an HTTP client library stops at the first refused write and never shows
the answer that came first. Runs in the tests and, imported by path, in a pod's network
namespace (no dependencies)."""

from __future__ import annotations

import socket


def send(host: str, port: int, path: str, total: int, chunked: bool, headers: str = "") -> dict:
    """POST `total` bytes (announced, or chunked); {"status", "body"} of the answer."""
    conn = socket.create_connection((host, port), timeout=60)
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{headers}"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {total}\r\n\r\n"
    conn.sendall(head.encode())
    chunk, sent = b"[" * 65536, 0
    try:
        while sent < total:
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            sent += len(chunk)
        if chunked:
            conn.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server stopped reading: its answer is what counts
    answer = b""
    try:
        while True:
            more = conn.recv(65536)
            if not more:
                break
            answer += more
            head_, _, body = answer.partition(b"\r\n\r\n")
            length = [
                int(line.split(b":")[1])
                for line in head_.lower().splitlines()
                if line.startswith(b"content-length:")
            ]
            if length and len(body) >= length[0]:
                break
    except OSError:
        pass
    conn.close()
    text = answer.decode(errors="replace")
    status = int(text.split()[1]) if text.startswith("HTTP/") else 0
    return {"status": status, "body": text.partition("\r\n\r\n")[2][:500]}
