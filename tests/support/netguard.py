"""No test sends traffic off the machine: a guard on Python's sockets.

``install()`` makes every name lookup of a host other than ``localhost`` or a loopback
address, and every connection to an address off the loopback interface, raise
:class:`OffTheMachineError` (an ``OSError``, so the code under test reports it as it
would an unreachable host) with a message that says why, before any packet is sent.
Each refusal is also written to stderr and appended to the file named by
``GITOPS_TEST_NETGUARD_LOG``, which the test session reads after every test: an
accidental request fails the test that made it, even when the code under test swallowed
the error, or a worker process made it.

pytest installs the guard in its own process (tests/conftest.py); worker processes get it
by being started through this module: ``python -m tests.support.netguard celery ...``
runs ``python -m celery ...`` with the guard installed (the prefork pool's children
inherit it). Subprocesses that are not Python (git, Chromium) are outside its reach.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import runpy
import socket
import sys
from collections.abc import Iterator
from typing import Any

LOG_ENV = "GITOPS_TEST_NETGUARD_LOG"
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")

_real_getaddrinfo = socket.getaddrinfo
_real_gethostbyname = socket.gethostbyname
_real_gethostbyname_ex = socket.gethostbyname_ex
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


class OffTheMachineError(ConnectionRefusedError):
    """A test tried to reach a host off the machine."""


def is_local(host: object) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback, or no host at
    all (a passive lookup for a server to bind)."""
    if host is None:
        return True
    name = (host.decode() if isinstance(host, bytes) else str(host)).strip("[]").lower()
    # The unspecified address: a lookup for a server to bind, or this machine itself.
    unspecified = ("", "0.0.0.0", "::")  # noqa: S104
    if name in unspecified or name in _LOCAL_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse(host: object, port: object) -> None:
    where = f"{host}:{port}" if port not in (None, "") else str(host)
    message = (
        f"tests stay on loopback: refused to reach {where} off the machine "
        "(tests/support/netguard.py)"
    )
    print(f"netguard: {message}", file=sys.stderr, flush=True)
    path = os.environ.get(LOG_ENV)
    if path:
        with _locked(path, "a") as log:
            log.write(f"{os.getpid()} {where}\n")
    raise OffTheMachineError(111, message)


def _getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    if not is_local(host):
        _refuse(host, port)
    return _real_getaddrinfo(host, port, *args, **kwargs)


def _gethostbyname(host: str) -> str:
    if not is_local(host):
        _refuse(host, None)
    return _real_gethostbyname(host)


def _gethostbyname_ex(host: str) -> Any:
    if not is_local(host):
        _refuse(host, None)
    return _real_gethostbyname_ex(host)


def _check(sock: socket.socket, address: Any) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_local(address[0]):
        _refuse(address[0], address[1])


def _connect(self: socket.socket, address: Any) -> None:
    _check(self, address)
    _real_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    _check(self, address)
    return _real_connect_ex(self, address)


def install() -> None:
    """Guard this process (idempotent)."""
    socket.getaddrinfo = _getaddrinfo
    socket.gethostbyname = _gethostbyname
    socket.gethostbyname_ex = _gethostbyname_ex
    socket.socket.connect = _connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign,assignment]


def take_refusals() -> list[str]:
    """The refusals logged since the last call (``"<pid> <host>:<port>"``), cleared."""
    path = os.environ.get(LOG_ENV)
    if not path or not os.path.exists(path):
        return []
    with _locked(path, "r+") as log:
        lines = log.read().splitlines()
        log.seek(0)
        log.truncate()
    return lines


@contextlib.contextmanager
def _locked(path: str, mode: str) -> Iterator[Any]:
    # Worker processes append while the test process reads and clears.
    with open(path, mode) as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield file
        finally:
            file.flush()
            fcntl.flock(file, fcntl.LOCK_UN)


def main() -> None:
    """``python -m tests.support.netguard MODULE ARGS...``: ``python -m MODULE ARGS...``
    with the guard installed."""
    if len(sys.argv) < 2:
        sys.exit("usage: python -m tests.support.netguard MODULE [ARGS...]")
    install()
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
