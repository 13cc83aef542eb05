"""What the service's own GET /metrics says about a measured run: how group admission grouped it.

Group admission (issue 23) observes, once per group it decides, the requests in the group
(`janus_admission_group_requests`) and their jobs (`janus_admission_group_jobs`), every
worker's added up (janus/metrics.py). Read just before and just after a run, the change of
a histogram's sum over the change of its count is the mean group of the run. A service
without them (before group admission) shows neither, and the bench says "-".
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from bench.common import say

GROUP_REQUESTS = "janus_admission_group_requests"
GROUP_JOBS = "janus_admission_group_jobs"
SCRAPE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Totals:
    """A histogram's count and sum over all its label values, as of one scrape."""

    count: float
    sum: float


def histogram_totals(exposition: str, names: tuple[str, ...]) -> dict[str, Totals]:
    """The totals of each of `names` that the text shows; a histogram it lacks is left out."""
    totals = {}
    for family in text_string_to_metric_families(exposition):
        if family.type != "histogram" or family.name not in names:
            continue
        count = sum(s.value for s in family.samples if s.name == f"{family.name}_count")
        total = sum(s.value for s in family.samples if s.name == f"{family.name}_sum")
        totals[family.name] = Totals(count, total)
    return totals


def scrape_groups(base_url: str) -> dict[str, Totals] | None:
    """The group histograms' totals now (GET /metrics as wrk's requests reach the service,
    with no header of their own); None when the scrape fails."""
    try:
        with urllib.request.urlopen(f"{base_url}/metrics", timeout=SCRAPE_TIMEOUT_S) as answer:
            return histogram_totals(answer.read().decode("utf-8"), (GROUP_REQUESTS, GROUP_JOBS))
    # HTTP errors are OSErrors too; ValueError: not text the parser reads.
    except (OSError, ValueError) as error:
        say(f"  GET /metrics failed ({error}): no group size for this run")
        return None


@dataclass(frozen=True)
class Grouping:
    """The groups decided during a run, and their mean size; None where the service did
    not say (no such histogram, or a failed scrape) or, for the means, decided no group."""

    groups: int | None = None
    mean_requests: float | None = None
    mean_jobs: float | None = None


def grouping(before: Mapping[str, Totals] | None, after: Mapping[str, Totals] | None) -> Grouping:
    """What changed between two scrapes. A histogram only `after` shows was empty before:
    a labelled series appears with its first observation."""
    if before is None or after is None or GROUP_REQUESTS not in after:
        return Grouping()
    requests = _change(before.get(GROUP_REQUESTS), after[GROUP_REQUESTS])
    groups = round(requests.count)
    if groups <= 0:
        return Grouping(groups=0)
    jobs = None
    if GROUP_JOBS in after:
        jobs = _change(before.get(GROUP_JOBS), after[GROUP_JOBS])
    return Grouping(
        groups=groups,
        mean_requests=requests.sum / requests.count,
        mean_jobs=jobs.sum / jobs.count if jobs and jobs.count > 0 else None,
    )


def _change(before: Totals | None, after: Totals) -> Totals:
    if before is None:
        return after
    return Totals(after.count - before.count, after.sum - before.sum)
