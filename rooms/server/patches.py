"""Process-wide changes to autobahn and Daphne that rooms.server.serve makes at start-up;
the names they replace are checked by rooms.internals."""

from collections.abc import Callable
from pprint import pformat

import autobahn.twisted.websocket
import autobahn.util
import autobahn.websocket.protocol
import txaio
from daphne.http_protocol import HTTPFactory
from twisted.internet.interfaces import ILoggingContext, IProtocolFactory
from zope.interface import implementer_only


def only_when_debugging(format_value: Callable[[object], str]) -> Callable[[object], str]:
    """`format_value` for autobahn's debug log lines only. autobahn formats their arguments
    on every connection even when nothing logs at debug level: `pformat` of its whole
    configuration and `hltype`, colouring method names (BENCHMARKS.md, "The connect path").
    `pformat`'s other use, `Timings.__str__`, serves timing tracking, which Daphne
    never turns on."""

    def format_if_debugging(value: object) -> str:
        debugging = txaio.get_global_log_level() in ("debug", "trace")
        return format_value(value) if debugging else ""

    return format_if_debugging


def quiet_autobahn() -> None:
    """Have autobahn format its debug lines' arguments only when debugging."""
    autobahn.websocket.protocol.pformat = only_when_debugging(pformat)
    for module in (autobahn.websocket.protocol, autobahn.twisted.websocket):
        module.hltype = only_when_debugging(autobahn.util.hltype)


@implementer_only(IProtocolFactory, ILoggingContext)
class HTTPFactoryWithoutALPN(HTTPFactory):
    """Daphne's HTTP factory, offering no ALPN (not an IProtocolNegotiationFactory).

    For a factory that offers it, Twisted 25.5 sets ALPN on the OpenSSL context shared by
    every connection of an `ssl:` endpoint, once per connection; pyOpenSSL 26.2 and later
    refuse to change a context already in use (twisted/twisted#12500), so every TLS
    handshake failed. Without HTTP/2 (not installed), ALPN only offered http/1.1, which
    clients assume without it."""
