"""GET /metrics's gauges of the partitions of jobs, read with the queue at each scrape."""

from __future__ import annotations

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from janus.queue import QueueDepth


def partition_gauges(depth: QueueDepth) -> list[Metric]:
    """janus_jobs_partitions, and janus_jobs_partition_past_retention for each partition
    `janus maintain` has not dropped though its span ended longer than the retention ago,
    labelled with each state of the jobs that hold it there, or "none". Its partition label
    takes a partition's name: a few, never a user's or a tenant's."""
    partitions = GaugeMetricFamily(
        "janus_jobs_partitions",
        "Partitions of jobs (jobs_before, jobs_default and one per span), as of the scrape.",
        value=depth.partitions,
    )
    held = GaugeMetricFamily(
        "janus_jobs_partition_past_retention",
        "1 for each partition of jobs past the retention still there, by the state of the"
        ' unfinished jobs that keep it ("none": nothing does; janus maintain drops it next).',
        labels=["partition", "unfinished"],
    )
    for partition, state in depth.held_partitions:
        held.add_metric([partition, state], 1)
    return [partitions, held]
