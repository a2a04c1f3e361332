"""Climb offered rates while the server keeps up, then bisect the clean limit."""

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Step = dict[str, object]


@dataclass(frozen=True)
class LadderPlan:
    """Geometric ladder of message rates, optionally bisected after the first failure."""

    start: float
    factor: float
    ceiling: float
    refine: int = 0
    max_steps: int = 30

    @property
    def worst_steps(self) -> int:
        """Most steps climb() can run, used to bound a case's time."""
        climbing = math.ceil(math.log(self.ceiling / self.start, self.factor)) + 1
        return min(self.max_steps, climbing + self.refine)


async def climb(plan: LadderPlan, run: Callable[[float], Awaitable[Step]]) -> list[Step]:
    """Run steps upward while lossless and not hopelessly slow; bisect the clean limit."""
    steps: list[Step] = []
    rate = plan.start
    while len(steps) < plan.max_steps:
        step = await run(rate)
        steps.append(step)
        if not step["climb"] or rate >= plan.ceiling:
            break
        rate = min(rate * plan.factor, plan.ceiling)
    for _ in range(plan.refine):
        best, limit = best_and_limit(steps)
        if best is None or limit is None or len(steps) >= plan.max_steps:
            break
        low, high = float(best["rate_msg_s"]), float(limit["rate_msg_s"])
        if high / low < 1.1:
            break
        steps.append(await run(math.sqrt(low * high)))
    return steps


def best_and_limit(steps: list[Step]) -> tuple[Step | None, Step | None]:
    """Highest-rate clean step and lowest-rate step that was not clean."""
    passed = [s for s in steps if s["ok"]]
    failed = [s for s in steps if not s["ok"]]
    best = max(passed, key=lambda s: float(s["rate_msg_s"]), default=None)
    limit = min(failed, key=lambda s: float(s["rate_msg_s"]), default=None)
    return best, limit


def lossless_best(steps: list[Step]) -> Step | None:
    """Highest-rate step with every message delivered, whatever its latency."""
    return max(
        (s for s in steps if s["lossless"]), key=lambda s: float(s["rate_msg_s"]), default=None
    )
