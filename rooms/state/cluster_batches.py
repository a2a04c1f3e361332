"""Script calls to a Redis Cluster, one pipeline per master: the calls of one event-loop turn
grouped by the master owning their keys' slot, each group sent on a connection to that
master (rooms.state.clients.node).

redis-py 7.4 refuses EVALSHA in a cluster pipeline, so each call was a request of its own:
72-85 µs of a master's CPU per message against 19-21 µs on one Redis, where the calls of a
turn share one pipeline; 25-27 µs per master so (BENCHMARKS.md, "Joins on the cluster, the
cluster pipelined per master, ..."). A call the
master answers with a redirection (MOVED or ASK, while slots move), or whose master does
not answer, runs again alone through the cluster client, which follows redirections and
learns where the slots went: the next turn's calls are grouped by the new owners.
"""

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AskError, ClusterDownError, TryAgainError

from rooms.state import clients

logger = logging.getLogger(__name__)

# Replies that say the call belongs elsewhere, or not yet: the cluster client handles them.
REDIRECTED = (AskError, TryAgainError, ClusterDownError)  # MovedError is an AskError
_FAILED = object()  # the reply of a call whose pipeline failed: it runs again alone


async def run(
    cluster: RedisCluster, calls: list, run_calls: Callable, pipeline: Callable, alone: Callable
) -> list:
    """Each call's reply or error, in order: one pipeline per master; redirected calls, and
    those of a master that failed, alone through `cluster`. `run_calls(client, calls, send)`
    sends with `send` (`pipeline` or `alone`) and loads scripts a server does not know."""
    await cluster.initialize()  # where the slots are, once
    groups: dict[str, list[int]] = {}
    for index, call in enumerate(calls):
        groups.setdefault(cluster.get_node_from_key(call.keys[0]).name, []).append(index)
    replies: list = [None] * len(calls)

    async def send(name: str, indexes: list[int]) -> None:
        try:
            answers = await run_calls(clients.node(name), [calls[n] for n in indexes], pipeline)
        except clients.BACKEND_ERRORS as exc:  # the master is gone, or failing over
            logger.info("pipeline to %s failed (%r): its calls go one by one", name, exc)
            await clients.drop_node(name)
            answers = [_FAILED] * len(indexes)
        again = []
        for n, answer in zip(indexes, answers, strict=True):
            replies[n] = answer
            if answer is _FAILED or isinstance(answer, REDIRECTED):
                again.append(n)
        alone_replies = await asyncio.gather(
            *(run_calls(cluster, [calls[n]], alone) for n in again), return_exceptions=True
        )
        for n, reply in zip(again, alone_replies, strict=True):
            replies[n] = reply if isinstance(reply, BaseException) else reply[0]

    await asyncio.gather(*(send(name, indexes) for name, indexes in groups.items()))
    return replies
