"""The quick and full case lists: sizes, rate ladders and per-step timing."""

from bench.ladder import LadderPlan
from bench.scenarios import Case, churn_case, idle_case, ladder_case
from bench.traffic import StepRules

SCENARIOS = ("S1", "S2", "S3", "S4", "S5")


def quick() -> list[Case]:
    """Short ladders and 1k idle users: a routine check in about three minutes."""
    rules = StepRules(duration_s=2.5, drain_s=3.0, quiet_s=0.5)
    return [
        ladder_case("S1", 1, 100, LadderPlan(10, 1.41, 4_000), rules, settle_s=20),
        ladder_case("S3", 100, 10, LadderPlan(40, 1.41, 20_000), rules, settle_s=20),
        idle_case("S4", 1_000, 10, hold_s=2.0, settle_s=20),
    ]


def full(idle_sizes: tuple[int, ...] = (1_000, 5_000, 10_000, 19_000)) -> list[Case]:
    """Every scenario with finer ladders, bisection and all idle sizes."""
    rules = StepRules(duration_s=4.0, drain_s=5.0, quiet_s=1.0)
    return [
        ladder_case("S1", 1, 100, LadderPlan(10, 1.5, 3_000, refine=2), rules, settle_s=30),
        ladder_case("S2", 1, 1_000, LadderPlan(1, 1.5, 300, refine=1), rules, settle_s=90),
        ladder_case("S3", 100, 10, LadderPlan(30, 1.5, 30_000, refine=2), rules, settle_s=30),
        *(idle_case("S4", n, 10, hold_s=5.0, settle_s=60) for n in idle_sizes),
        churn_case("S5", workers=20, standing=2, duration_s=15.0, max_cycles=50_000),
    ]
