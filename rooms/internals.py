"""Every name the server relies on that its dependencies do not promise, in one list, checked.

Speed and reliability took the server under Daphne, autobahn, Twisted, uvicorn, picows,
Channels and channels-redis: it overrides their methods, reads and writes their attributes,
patches a few of their module globals and builds channels-redis' wire format in Lua. None of that is
their public API, so an upgrade may rename any of it and silently undo a fix. Each such
name is listed here with the module that relies on it; `missing()` checks them against the
installed versions, the launcher and the Redis layer refuse to start while anything is
missing (`require`), and tests/test_compat.py asserts the whole list in CI.

A name is checked one of two ways: `attribute` (the module, class or function has it), or
`assigned` (the given function's source assigns `<something>.<name>`: attributes that exist
only on instances, set as a connection or layer is made).
"""

import importlib
import inspect
import re
from importlib.metadata import PackageNotFoundError, version
from typing import NamedTuple

from django.core.exceptions import ImproperlyConfigured


class Reliance(NamedTuple):
    """`module`.`path` must exist (or, with `assigned_in`, that function must set it)."""

    module: str
    path: str  # dotted, from the module
    used_by: str  # our module that needs it
    assigned_in: str = ""  # dotted function path whose source must assign <x>.<path>


def _a(module: str, used_by: str, *paths: str) -> list[Reliance]:
    return [Reliance(module, path, used_by) for path in paths]


def _set(module: str, used_by: str, function: str, *names: str) -> list[Reliance]:
    return [Reliance(module, name, used_by, function) for name in names]


SERVE, CONNECTION = "rooms.server.serve", "rooms.server.connection"
FRAMES, UPGRADES, PATCHES = "rooms.server.frames", "rooms.server.upgrades", "rooms.server.patches"
GUARD, MEMORY, PUBSUB = "rooms.server.guard", "rooms.layers.memory", "rooms.layers.redis_pubsub"
RESUBSCRIBING = "rooms.layers.resubscribing"
CLUSTER = "rooms.layers.cluster_pubsub"
KEEPALIVE, INSTANCES = "rooms.server.keepalive", "rooms.server.instances"
FAST, HTTP, WEBSOCKET = "rooms.server.fast", "rooms.server.http", "rooms.server.websocket"
HTTPTOOLS = "uvicorn.protocols.http.httptools_impl"
POOLS = "rooms.state.pools"

# fmt: off
RELIANCES: dict[str, list[Reliance]] = {
    "daphne": [
        # RoomsServer overrides these and relies on their roles in Daphne's Server.
        *_a("daphne.server", SERVE, "Server.create_application", "Server.log_action",
            "Server.listen_success", "Server.handle_reply", "Server.protocol_disconnected",
            "Server.protocol_connected", "Server.run", "Server.application_checker"),
        *_set("daphne.server", SERVE, "Server.__init__", "application", "signal_handlers"),
        *_set("daphne.server", SERVE, "Server.run", "connections", "http_factory",
              "ws_factory"),
        # Server.run schedules both checkers; RoomsServer replaces them.
        *_a("daphne.server", SERVE, "Server.timeout_checker", "Server.stop"),
        *_set("daphne.server", KEEPALIVE, "Server.__init__", "ping_interval", "ping_timeout",
              "websocket_timeout"),
        *_set("daphne.server", INSTANCES, "Server.__init__", "application_close_timeout"),
        *_a("daphne.ws_protocol", KEEPALIVE, "WebSocketProtocol.check_timeouts",
            "WebSocketProtocol.duration", "WebSocketProtocol.serverClose"),
        *_a("daphne.http_protocol", KEEPALIVE, "WebRequest.check_timeouts"),
        *_a("daphne.ws_protocol", INSTANCES, "WebSocketProtocol.handle_exception"),
        *_a("daphne.http_protocol", INSTANCES, "WebRequest.handle_exception"),
        *_a("daphne.cli", SERVE, "CommandLineInterface.server_class", "CommandLineInterface.run"),
        *_a("daphne.http_protocol", PATCHES, "HTTPFactory"),
        *_a("daphne.ws_protocol", FRAMES, "WebSocketProtocol.handle_reply",
            "WebSocketProtocol.serverSend"),
        # The fast handshake path hands over a connection as Daphne's WebRequest does.
        *_a("daphne.utils", UPGRADES, "HEADER_NAME_RE", "INVALID_HEADER_VALUE_BYTES"),
        *_set("daphne.http_protocol", UPGRADES, "WebRequest.process", "_raw_query_string"),
        *_set("daphne.ws_protocol", CONNECTION, "WebSocketProtocol.onConnect",
              "application_deferred", "request", "clean_headers"),
    ],
    "autobahn": [
        # Debug formatting skipped unless debugging: module globals replaced at start-up.
        *_a("autobahn.websocket.protocol", PATCHES, "pformat", "hltype"),
        *_a("autobahn.twisted.websocket", PATCHES, "hltype"),
        *_a("autobahn.util", PATCHES, "hltype"),
        *_a("autobahn.websocket.protocol", CONNECTION, "WebSocketServerProtocol.CONFIG_ATTRS"),
        # The keepalive pong taken before autobahn's parser, only between frames.
        *_set("autobahn.websocket.protocol", CONNECTION, "WebSocketProtocol._connectionMade",
              "data"),
        *_set("autobahn.websocket.protocol", CONNECTION,
              "WebSocketServerProtocol.succeedHandshake", "current_frame"),
        *_a("autobahn.twisted.websocket", CONNECTION, "WebSocketAdapterProtocol.dataReceived"),
        *_set("autobahn.websocket.protocol", KEEPALIVE, "WebSocketProtocol._connectionMade",
              "wasClean", "wasNotCleanReason"),
        *_a("autobahn.websocket.protocol", KEEPALIVE, "WebSocketProtocol.sendPing"),
        *_set("autobahn.websocket.protocol", CONNECTION, "WebSocketProtocol.__init__",
              "is_closed"),
        *_set("autobahn.websocket.protocol", FRAMES, "WebSocketProtocol._connectionMade",
              "send_queue", "trafficStats", "_perMessageCompress"),
        *_set("autobahn.websocket.protocol", CONNECTION,
              "WebSocketServerProtocol.processHandshake", "http_request_data",
              "http_status_line", "http_headers", "http_request_uri", "http_request_params",
              "_wskey", "websocket_extensions", "websocket_protocols"),
        *_set("autobahn.websocket.protocol", CONNECTION,
              "WebSocketServerProtocol.succeedHandshake", "http_response_data"),
        *_a("autobahn.websocket.protocol", FRAMES, "WebSocketProtocol.sendData",
            "WebSocketProtocol.STATE_OPEN", "WebSocketProtocol.STATE_CONNECTING",
            "WebSocketProtocol.STATE_PROXY_CONNECTING", "WebSocketProtocol.sendCloseFrame",
            "WebSocketProtocol.dropConnection"),
    ],
    "twisted": [
        # Frames written at once when nothing waits before them.
        *_a("twisted.internet.tcp", FRAMES, "Connection.writeSomeData", "Connection.TLS"),
        *_a("twisted.internet.abstract", FRAMES, "FileDescriptor.dataBuffer",
            "FileDescriptor.bufferSize"),
        *_set("twisted.internet.abstract", FRAMES, "FileDescriptor.__init__", "_tempDataBuffer"),
        *_a("twisted.web.http", UPGRADES, "_GenericHTTPChannelProtocol", "HTTPChannel.setTimeout"),
        *_set("twisted.web.http", SERVE, "HTTPChannel.__init__", "requests"),
        *_set("twisted.protocols.policies", UPGRADES, "ProtocolWrapper.__init__",
              "wrappedProtocol"),
        *_a("twisted.protocols.tls", GUARD, "TLSMemoryBIOProtocol"),
    ],
    "channels": [
        *_a("channels.layers", MEMORY, "InMemoryChannelLayer._clean_expired",
            "InMemoryChannelLayer.get_capacity", "InMemoryChannelLayer.extensions"),
        *_set("channels.layers", MEMORY, "InMemoryChannelLayer.__init__", "channels", "groups"),
        *_set("channels.layers", MEMORY, "BaseChannelLayer.__init__", "expiry"),
    ],
    "channels_redis": [
        *_a("channels_redis.pubsub", PUBSUB, "RedisPubSubChannelLayer._get_layer",
            "RedisPubSubLoopLayer._get_shard", "RedisPubSubLoopLayer._subscribe_to_channel",
            "RedisPubSubLoopLayer._get_group_channel_name"),
        *_a("channels_redis.pubsub", RESUBSCRIBING, "RedisSingleShardConnection._receive_message",
            "RedisSingleShardConnection._do_receiving",
            "RedisSingleShardConnection._ensure_redis",
            "RedisSingleShardConnection._ensure_receiver"),
        *_set("channels_redis.pubsub", PUBSUB, "RedisPubSubChannelLayer.__init__", "_layers",
              "_args", "_kwargs", "_serializer"),
        *_set("channels_redis.pubsub", PUBSUB, "RedisPubSubLoopLayer.__init__", "_shards",
              "channels", "groups", "prefix"),
        *_set("channels_redis.pubsub", RESUBSCRIBING, "RedisSingleShardConnection.__init__",
              "_lock", "_pubsub", "_redis", "_subscribed_to", "host"),
        *_a("channels_redis.utils", PUBSUB, "_wrap_close"),
        # rooms.state.redis_sequence publishes room events itself, in the layer's format:
        # msgpack (checked byte for byte in tests/test_compat.py).
        *_a("channels_redis.serializers", "rooms.state.redis_sequence",
            "MsgPackSerializer.as_bytes"),
    ],
    "uvicorn": [
        # rooms.server.http replaces HttpToolsProtocol.data_received (to keep the bytes behind
        # an upgrade's head) and hands the parsed head to rooms.server.websocket.
        *_a(HTTPTOOLS, HTTP, "HttpToolsProtocol._unset_keepalive_if_required",
            "HttpToolsProtocol._should_upgrade", "HttpToolsProtocol._unsupported_upgrade_warning",
            "HttpToolsProtocol.send_400_response", "HttpToolsProtocol.on_message_begin",
            "HttpToolsProtocol.on_headers_complete", "HttpToolsProtocol.on_header"),
        *_set(HTTPTOOLS, HTTP, "HttpToolsProtocol.__init__", "config", "parser", "logger",
              "server_state", "app_state", "connections"),
        *_set(HTTPTOOLS, HTTP, "HttpToolsProtocol.connection_made", "transport", "server",
              "client", "scheme"),
        *_set(HTTPTOOLS, HTTP, "HttpToolsProtocol.on_message_begin", "url", "headers"),
        # The shutdown waits for server_state's connections and tasks, which
        # rooms.server.websocket keeps; RoomsUvicorn keeps a caught SIGTERM from being raised
        # again once it has shut down.
        *_set("uvicorn.server", WEBSOCKET, "ServerState.__init__", "connections", "tasks"),
        *_set("uvicorn.server", FAST, "Server.__init__", "_captured_signals"),
        *_a("uvicorn.server", FAST, "Server.capture_signals", "Server.startup",
            "Server.shutdown"),
        *_set("uvicorn.config", WEBSOCKET, "Config.load", "loaded_app"),
    ],
    "picows": [
        # rooms.server.websocket makes picows' server protocol itself, on a socket uvicorn
        # accepted, feeds it the handshake, and drops the handshake's header maps once open.
        *_a("picows.picows", WEBSOCKET, "WSProtocol", "WSProtocol.get_buffer",
            "WSProtocol.buffer_updated", "WSProtocol.connection_made", "WSAutoPingStrategy",
            "WSTransport.request", "WSTransport.response"),
        *_a("picows.common", WEBSOCKET, "WSUpgradeRequest.headers", "WSUpgradeResponse.headers"),
    ],
    "redis": [
        # Sharded pub/sub on a cluster: where the slots are now, read again after a failover.
        *_set("redis.asyncio.cluster", CLUSTER, "RedisCluster.__init__", "nodes_manager"),
        *_a("redis.asyncio.cluster", CLUSTER, "NodesManager.initialize"),
        # Connections packing commands with hiredis: the methods replaced, and the class a
        # pool makes its connections of.
        *_a("redis.asyncio.connection", POOLS, "AbstractConnection.pack_command",
            "AbstractConnection.pack_commands"),
        *_set("redis.asyncio.connection", POOLS, "ConnectionPool.__init__", "connection_class"),
    ],
}
# fmt: on


def _resolve(module: str, path: str) -> object:
    target = importlib.import_module(module)
    for part in path.split("."):
        target = getattr(target, part)
    return target


def _present(reliance: Reliance) -> bool:
    try:
        if not reliance.assigned_in:
            _resolve(reliance.module, reliance.path)
            return True
        source = inspect.getsource(_resolve(reliance.module, reliance.assigned_in))
    except (ImportError, AttributeError, OSError, TypeError):
        return False
    # `<x>.<name> = `, `<x>.<name>: T = ` or `<x>.<name>, <y> = `, but not `<x>.<name> ==`.
    assigned = rf"\.{re.escape(reliance.path)}\b[^\n=]*(?<![=!<>])=(?!=)"
    return re.search(assigned, source) is not None


def missing(*libraries: str) -> list[str]:
    """What the installed libraries (all of them by default) lack of what we rely on."""
    problems = []
    for library in libraries or RELIANCES:
        for reliance in RELIANCES[library]:
            if not _present(reliance):
                where = f" (set in {reliance.assigned_in})" if reliance.assigned_in else ""
                problems.append(
                    f"{reliance.module}.{reliance.path}{where}, used by {reliance.used_by}"
                )
    return problems


def require(*libraries: str) -> None:
    """Refuse to start, naming each missing name and the installed versions, when a library
    no longer has what the server relies on."""
    problems = missing(*libraries)
    if problems:
        installed = ", ".join(f"{name} {_version(name)}" for name in libraries or RELIANCES)
        raise ImproperlyConfigured(
            f"The installed libraries ({installed}) lack names the server relies on; "
            "requirements.txt pins the versions it was checked against:\n  " + "\n  ".join(problems)
        )


def _version(library: str) -> str:
    try:
        return version(library.replace("_", "-"))
    except PackageNotFoundError:
        return "?"
