"""Operations endpoints: liveness, readiness and Prometheus metrics (docs/operations.md)."""

import asyncio
import logging

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from rooms.core import metrics
from rooms.core.limits import connections
from rooms.state import clients
from rooms.state.backends import get_writer, in_redis

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0  # seconds each readiness check may take


@require_GET
async def healthz(request: HttpRequest) -> JsonResponse:
    """Alive: the process answers HTTP. Restart it when this fails."""
    return JsonResponse({"status": "ok"})


async def _channel_layer() -> None:
    # Through the clients room state uses: readiness is theirs answering. With several
    # shards, one answering is enough: one shard down stops only its rooms, and every
    # process sees the same outage, so taking them all out of service would stop them all.
    if in_redis():
        pings = (clients.connect(shard).ping() for shard in range(clients.count()))
        outcomes = await asyncio.gather(*pings, return_exceptions=True)
        if all(isinstance(outcome, BaseException) for outcome in outcomes):
            raise outcomes[0]


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _check(name: str, check) -> str:
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except Exception as exc:  # every failure means "not ready"
        # The error names hosts, ports and database users: the log gets it, not the
        # (unauthenticated) client.
        logger.warning("readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
        return "unavailable"
    return "ok"


def _history() -> str:
    # At its bound the writer refuses new messages (and has logged it once, at WARNING);
    # /metrics has the backlog's size.
    return "unavailable" if get_writer().full else "ok"


@require_GET
async def readyz(request: HttpRequest) -> JsonResponse:
    """Ready: channel layer and database answer, history keeps up. Send no traffic otherwise."""
    checks = {
        "channel_layer": await _check("channel_layer", _channel_layer),
        "database": await _check("database", sync_to_async(_database)),
        "history": _history(),
    }
    ready = all(result == "ok" for result in checks.values())
    return JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


@require_GET
async def metrics_view(request: HttpRequest) -> HttpResponse:
    """This process's counters in the Prometheus text format."""
    body = metrics.render(
        connections=connections.total,
        rooms=connections.rooms,
        dropped=getattr(get_channel_layer(), "dropped", 0),
        pending=get_writer().pending,
        pending_bytes=get_writer().pending_bytes,
    )
    return HttpResponse(body, content_type="text/plain; version=0.0.4; charset=utf-8")
