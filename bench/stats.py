"""Latency summaries in milliseconds from raw nanosecond samples."""


def latency_summary(samples_ns: list[int]) -> dict[str, float | None]:
    """p50/p99/max of a latency sample, None when nothing was delivered."""
    if not samples_ns:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(samples_ns)
    last = len(ordered) - 1

    def pick(q: float) -> float:
        return round(ordered[int(q * last)] / 1e6, 2)

    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": pick(1.0)}
