"""Loaded by every Python process of a guarded pipeline run: records any non-loopback socket use.

An audit hook (PEP 578) sees each socket.connect / sendto and each name look-up (getaddrinfo,
gethostbyname) before it happens; anything not aimed at loopback is appended to $CHURNML_NETGUARD_LOG.
"""

import ipaddress
import os
import sys

_LOG = os.environ.get("CHURNML_NETGUARD_LOG")
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _is_local(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host)
    if host in _LOCAL_NAMES or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _hook(event, args):
    if event in ("socket.connect", "socket.sendto"):
        address = args[1] if event == "socket.connect" else args[2]
        if not isinstance(address, tuple):  # a Unix socket path
            return
        host = address[0]
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
        host = args[0]
    else:
        return
    if not _is_local(host):
        with open(_LOG, "a") as fh:
            fh.write(f"{os.getpid()} {event} {host!r} {' '.join(sys.argv)[:200]}\n")


if _LOG:
    sys.addaudithook(_hook)
