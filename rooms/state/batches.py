"""Lua script calls to one Redis shard, sent together: every call made during one turn of the
event loop goes out in one pipeline.

Most of what a message costs Redis is not the script but its own request and reply: a
read, a write and a pass of Redis' event loop each, about as much again as the script
(BENCHMARKS.md, "What a message costs Redis"). A busy server has many messages in one
turn; sent as one pipeline they share that cost. A call waits for no timer: the batch
leaves on the loop's next turn.
"""

import asyncio
import hashlib
import weakref
from collections.abc import Callable, Sequence
from typing import NamedTuple

from redis.exceptions import NoScriptError

from rooms.state import clients, cluster_batches


class Script(NamedTuple):
    """A Lua script's source and the SHA1 digest EVALSHA names it by."""

    source: str
    sha: str


def script(source: str) -> Script:
    """`source`, ready to be called by digest."""
    return Script(source, hashlib.sha1(source.encode()).hexdigest())


_batches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> _Batches


class _Call(NamedTuple):
    script: Script
    keys: Sequence
    args: Sequence
    result: asyncio.Future


async def call(shard: int, script: Script, keys: Sequence, args: Sequence) -> object:
    """Run `script` on `shard` with the other calls made this turn; its reply, or its error."""
    loop = asyncio.get_running_loop()
    batches = _batches.get(loop)
    if batches is None:
        batches = _batches[loop] = _Batches()
    return await batches.call(loop, shard, script, keys, args)


class _Batches:
    """Script calls queued per shard during this event-loop turn (one instance per loop)."""

    def __init__(self) -> None:
        self._queued: dict[int, list[_Call]] = {}

    async def call(self, loop, shard: int, script: Script, keys: Sequence, args: Sequence):
        queued = self._queued.get(shard)
        if queued is None:
            queued = self._queued[shard] = []
            loop.call_soon(lambda: asyncio.ensure_future(self._send(shard)))
        call = _Call(script, keys, args, loop.create_future())
        queued.append(call)
        return await call.result

    async def _send(self, shard: int) -> None:
        calls = self._queued.pop(shard)
        try:
            client = clients.connect(shard)
            if clients.cluster():  # one pipeline per master (rooms.state.cluster_batches)
                replies = await cluster_batches.run(client, calls, _run, _pipeline, _alone)
            else:
                replies = await _run(client, calls, _pipeline)
        except BaseException as exc:  # the connection failed: every call gets the error
            for call in calls:
                if not call.result.done():
                    call.result.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for call, reply in zip(calls, replies, strict=True):
            if call.result.done():  # its caller was cancelled
                continue
            if isinstance(reply, Exception):
                call.result.set_exception(reply)
            else:
                call.result.set_result(reply)


async def _run(client, calls: list[_Call], send: Callable) -> list:
    """Each call's reply or error, in order, sent by `send`; scripts the shard does not know
    are loaded and their calls run again (after a restart of Redis, or on a shard seen for
    the first time)."""
    replies = await send(client, calls)
    unknown = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if unknown:
        for source in {calls[n].script.source for n in unknown}:
            await client.script_load(source)
        again = await send(client, [calls[n] for n in unknown])
        for n, reply in zip(unknown, again, strict=True):
            replies[n] = reply
    return replies


async def _pipeline(client, calls: list[_Call]) -> list:
    async with client.pipeline(transaction=False) as pipe:
        for call in calls:
            pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
        return await pipe.execute(raise_on_error=False)


async def _alone(client, calls: list[_Call]) -> list:
    (call,) = calls
    try:
        return [await client.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)]
    except NoScriptError as exc:
        return [exc]
