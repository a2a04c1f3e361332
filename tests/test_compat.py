"""What the server relies on in its dependencies, beyond their public API, is there; and what
the Redis sequence publishes on a layer's behalf is exactly what the layer would."""

import subprocess
import sys

import msgpack
import pytest
import redis.asyncio as aioredis
from django.core.exceptions import ImproperlyConfigured

from rooms import internals
from rooms.core import protocol
from rooms.core.events import room_event
from rooms.layers.redis_pubsub import ResilientRedisPubSubChannelLayer
from rooms.state.redis_sequence import RedisSequence
from tests.servers import ROOT


def test_every_name_the_server_relies_on_is_in_the_installed_libraries():
    assert internals.missing() == []
    assert {name for name in internals.RELIANCES} == {
        "daphne",
        "autobahn",
        "twisted",
        "channels",
        "channels_redis",
        "redis",
        "uvicorn",
        "picows",
    }


def test_a_name_gone_from_a_library_is_named_with_what_relies_on_it(monkeypatch):
    gone = [
        internals.Reliance("autobahn.websocket.protocol", "no_such_global", "rooms.x"),
        internals.Reliance("daphne.server", "Server.no_such_method", "rooms.y"),
        internals.Reliance("daphne.server", "never_set", "rooms.z", "Server.__init__"),
        internals.Reliance("no.such.module", "anything", "rooms.w"),
    ]
    monkeypatch.setitem(internals.RELIANCES, "autobahn", gone)
    assert internals.missing("autobahn") == [
        "autobahn.websocket.protocol.no_such_global, used by rooms.x",
        "daphne.server.Server.no_such_method, used by rooms.y",
        "daphne.server.never_set (set in Server.__init__), used by rooms.z",
        "no.such.module.anything, used by rooms.w",
    ]
    with pytest.raises(ImproperlyConfigured, match=r"autobahn \d[\d.]*\) lack names"):
        internals.require("autobahn")


@pytest.mark.parametrize(
    ("line", "assigns"),
    [
        ("self.name = 1", True),
        ("self.name: int = 1", True),
        ("self.other, self.name, count = parse()", True),
        ("protocol.name = value", True),
        ("if self.name == 1:", False),
        ("self.name_longer = 1", False),
        ("x = self.name", False),
    ],
)
def test_an_attribute_counts_as_set_only_where_it_is_assigned(monkeypatch, line, assigns):
    def function(self):  # a stand-in whose source is the one line
        pass

    monkeypatch.setattr(internals.inspect, "getsource", lambda _: line)
    reliance = internals.Reliance("tests.test_compat", "name", "rooms.x", "test_compat")
    monkeypatch.setattr(internals, "_resolve", lambda module, path: function)
    assert internals._present(reliance) is assigns


def test_the_launcher_refuses_to_start_when_a_patched_name_is_gone():
    # autobahn renamed pformat: the debug-formatting patch would silently do nothing.
    code = (
        "import autobahn.websocket.protocol as p; del p.pformat; "
        "from rooms.server.serve import main; main(['chatproject.asgi:application'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "lack names the server relies on" in result.stderr
    assert "autobahn.websocket.protocol.pformat, used by rooms.server.patches" in result.stderr


@pytest.mark.parametrize(
    "config",
    [{"symmetric_encryption_keys": ["secret"]}, {"serializer_format": "json"}],
    ids=["encrypted", "json"],
)
def test_a_layer_configuration_the_sequence_cannot_publish_for_is_refused(config):
    with pytest.raises(ImproperlyConfigured, match="msgpack"):
        ResilientRedisPubSubChannelLayer(hosts=["redis://127.0.0.1:6379/0"], **config)


@pytest.mark.redis
async def test_a_message_and_a_join_built_in_lua_are_the_bytes_the_layer_would_send(
    redis_env, settings
):
    settings.REDIS_URL = redis_env["REDIS_URL"]
    settings.REDIS_URLS = [redis_env["REDIS_URL"]]
    prefix = redis_env["REDIS_PREFIX"]
    layer = ResilientRedisPubSubChannelLayer(hosts=[redis_env["REDIS_URL"]], prefix=prefix)
    sequence = RedisSequence(prefix, 10, 10_000, 60, True, lambda room: 0, 1.0)
    listener = aioredis.Redis.from_url(redis_env["REDIS_URL"]).pubsub()
    await listener.subscribe(f"{prefix}__group__{{room.Room1}}")
    await listener.get_message(timeout=1)  # the subscription's confirmation

    async def published() -> bytes:
        message = await listener.get_message(timeout=5)
        assert message is not None and message["type"] == "message", message
        return message["data"]

    event = room_event()
    stamp = await sequence.publish(None, "room.Room1", "Room1", "Nick", 'héllo "x"', event)
    frames = protocol.message("Room1", "Nick", 'héllo "x"', stamp.id, stamp.ts)
    sent = {**event, "text": frames[protocol.TEXT], "id": stamp.id, "json": frames[protocol.JSON]}
    assert await published() == layer.serialize(sent)
    assert layer.deserialize(layer.serialize(sent)) == sent

    join = room_event(text="Nick joined Room1", json="{}")
    await sequence.publish_join(None, "room.Room1", "Room1", "specific.abc", join)
    assert await published() == layer.serialize({**join, "joiner": "specific.abc", "last": 1})
    assert msgpack.unpackb(layer.serialize({"x": 1})) == {"x": 1}  # plain msgpack, no prefix
    await listener.aclose()
    await sequence.close()
