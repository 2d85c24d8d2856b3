"""A host name that is not loopback but reaches a FakeComfy on 127.0.0.1: `socket.getaddrinfo` answers for it
in this process only (urllib and websocket-client both resolve through it)."""

from __future__ import annotations

import socket

REMOTE_HOST = "gpu-box.test"  # .test is reserved: never a real machine


def resolve_remote_host_to_loopback(monkeypatch) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return real("127.0.0.1" if host == REMOTE_HOST else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def as_remote(url: str) -> str:
    """The fake's http://127.0.0.1:PORT address, said with the remote host name."""
    return url.replace("127.0.0.1", REMOTE_HOST)
