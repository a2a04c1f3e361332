"""Process-wide counters, and their Prometheus text exposition (GET /metrics).

Everything here sits on the fan-out path, so it is plain integer arithmetic: each delivery
is one increment, and one delivery in LATENCY_SAMPLE_EVERY also feeds the latency
histogram (time from group_send to the frame handed to the transport).
"""

import gc
import time
from bisect import bisect_left
from collections import Counter

LATENCY_SAMPLE_EVERY = 16  # a power of two: the sampling test is a bit mask
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SAMPLE_MASK = LATENCY_SAMPLE_EVERY - 1


class Histogram:
    """A Prometheus histogram: per-bucket counts, total count and sum."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Record one observation."""
        self.counts[bisect_left(self.buckets, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count of observations <= le) for every bucket, +Inf last."""
        total, rows = 0, []
        for bound, count in zip((*map(repr, self.buckets), "+Inf"), self.counts, strict=True):
            total += count
            rows.append((bound, total))
        return rows


class Metrics:
    """Counters for one server process."""

    def __init__(self) -> None:
        self.messages_in = 0  # chat messages accepted from clients
        self.messages_out = 0  # room events handed to client transports
        self.errors: Counter[str] = Counter()  # error frames and forced closes, by code
        self.latency = Histogram(LATENCY_BUCKETS)
        self.history_written = 0  # messages stored by rooms.state.history
        self.history_set_aside: Counter[str] = Counter()  # rows the database refused, by reason
        self.history_refused = 0  # messages refused because the history backlog was full


metrics = Metrics()


def received() -> None:
    """A client's chat message was accepted and sent to its room."""
    metrics.messages_in += 1


def delivered(sent: float) -> None:
    """A room event reached one member's transport; `sent` is its group_send wall time."""
    metrics.messages_out += 1
    if not metrics.messages_out & _SAMPLE_MASK:
        metrics.latency.observe(time.time() - sent)


def error(code: str) -> None:
    """A client was sent an error, or closed for one."""
    metrics.errors[code] += 1


def history_written(count: int) -> None:
    """`count` messages were stored in the database."""
    metrics.history_written += count


def history_set_aside(reason: str) -> None:
    """The database refused a message for good; it will not be retried."""
    metrics.history_set_aside[reason] += 1


def history_refused() -> None:
    """A message was refused before publishing: the history backlog was full."""
    metrics.history_refused += 1


# (metric, key of gc.get_stats(), HELP text): the cycle collector, per generation.
_GC_COUNTERS = (
    (
        "python_gc_objects_collected_total",
        "collected",
        "Objects the cycle collector found unreachable, by generation: memory that reference "
        "counting could not free.",
    ),
    ("python_gc_collections_total", "collections", "Cycle collector runs, by generation."),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(connections: int, rooms: int, dropped: int, pending: int, pending_bytes: int) -> str:
    """The Prometheus text format (version 0.0.4) for this process's counters; `pending`
    and `pending_bytes`: messages waiting to be written, and their text's memory."""
    lines = [
        "# HELP rooms_connections Open room WebSocket connections in this process.",
        "# TYPE rooms_connections gauge",
        f"rooms_connections {connections}",
        "# HELP rooms_rooms Rooms with at least one member in this process.",
        "# TYPE rooms_rooms gauge",
        f"rooms_rooms {rooms}",
        "# HELP rooms_messages_in_total Chat messages accepted from clients.",
        "# TYPE rooms_messages_in_total counter",
        f"rooms_messages_in_total {metrics.messages_in}",
        "# HELP rooms_messages_out_total Room events handed to client connections.",
        "# TYPE rooms_messages_out_total counter",
        f"rooms_messages_out_total {metrics.messages_out}",
        "# HELP rooms_dropped_total Room events dropped on a full channel-layer queue.",
        "# TYPE rooms_dropped_total counter",
        f"rooms_dropped_total {dropped}",
        "# HELP rooms_errors_total Error frames sent and connections closed, by error code.",
        "# TYPE rooms_errors_total counter",
    ]
    for code, count in sorted(metrics.errors.items()):
        lines.append(f'rooms_errors_total{{code="{_escape(code)}"}} {count}')
    lines += [
        "# HELP rooms_history_pending Messages accepted and not written to the database yet.",
        "# TYPE rooms_history_pending gauge",
        f"rooms_history_pending {pending}",
        "# HELP rooms_history_pending_bytes Memory taken by the text of those messages.",
        "# TYPE rooms_history_pending_bytes gauge",
        f"rooms_history_pending_bytes {pending_bytes}",
        "# HELP rooms_history_written_total Messages stored in the database.",
        "# TYPE rooms_history_written_total counter",
        f"rooms_history_written_total {metrics.history_written}",
        "# HELP rooms_history_set_aside_total Messages the database refused, never retried,"
        " by reason.",
        "# TYPE rooms_history_set_aside_total counter",
    ]
    for reason, count in sorted(metrics.history_set_aside.items()):
        lines.append(f'rooms_history_set_aside_total{{reason="{_escape(reason)}"}} {count}')
    lines += [
        "# HELP rooms_history_refused_total Messages refused because too many were waiting"
        " to be written.",
        "# TYPE rooms_history_refused_total counter",
        f"rooms_history_refused_total {metrics.history_refused}",
    ]
    lines += [
        "# HELP rooms_delivery_latency_seconds group_send to transport, one delivery in "
        f"{LATENCY_SAMPLE_EVERY}.",
        "# TYPE rooms_delivery_latency_seconds histogram",
    ]
    for bound, count in metrics.latency.cumulative():
        lines.append(f'rooms_delivery_latency_seconds_bucket{{le="{bound}"}} {count}')
    lines += [
        f"rooms_delivery_latency_seconds_sum {metrics.latency.sum!r}",
        f"rooms_delivery_latency_seconds_count {metrics.latency.count}",
    ]
    stats = gc.get_stats()
    for name, key, meaning in _GC_COUNTERS:
        lines += [f"# HELP {name} {meaning}", f"# TYPE {name} counter"]
        lines += [f'{name}{{generation="{gen}"}} {stat[key]}' for gen, stat in enumerate(stats)]
    return "\n".join(lines) + "\n"
