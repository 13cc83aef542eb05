"""Shadow mode: no job is refused, and what is stored is what enforcement decides.

Two fresh users share a config but for its mode; the same requests go to both. The shadow
user's answers are all acceptances, its jobs are stored accepted and queued with the enforce
user's decisions in shadow_status and shadow_reason, job by job, and both users' buckets end
alike: shadow mode debits the would-be accepted jobs only. Buckets never refill here, so
timing plays no part.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import UUID

import falcon.testing
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from tests.support.answers import RATE_LIMITED
from tests.support.app import post_json
from tests.support.bodies import batch, job, single
from tests.support.factories import stored_job, user_with_config
from tests.support.queue import claim, job_row, lease_call

DEPENDENCIES = {
    "openai": {"capacity": 10, "refill_per_second": 0},
    "search": {"capacity": 100, "refill_per_second": 0},
}
# Every tenant has half of each bucket (openai 5, search 50); vip all of it.
CONFIG: dict[str, Any] = {
    "min_priority": 3,
    "tenant_share": 0.5,
    "tenant_overrides": {"vip": 1},
}

ATOMIC = "batch rejected atomically"
TOO_LOW = "priority too low"

# (route, body, enforcement's decisions and their reason classes for the metrics).
SEQUENCE: list[tuple[str, dict[str, Any], list[tuple[str, str, str]]]] = [
    ("/dashboard/jobs", single(5, {"openai": 4}, tenant_id="a"), [("Accepted", "", "none")]),
    (
        "/system/jobs",
        single(5, {"openai": 2}, tenant_id="a"),
        [("Rejected", "tenant 'a' exceeded its share of dependency 'openai'", "tenant_share")],
    ),
    (
        "/system/jobs",
        single(5, {"openai": 11}),
        [("Rejected", "dependency 'openai' cost 11 exceeds capacity 10", "over_capacity")],
    ),
    ("/dashboard/jobs", single(2, {"openai": 1}), [("Rejected", TOO_LOW, "min_priority")]),
    (
        "/dashboard/jobs",
        single(5, {"nope": 1}),
        [("Rejected", "dependency 'nope' is not configured", "unknown_dependency")],
    ),
    (
        "/system/jobs/batch/atomic",
        batch(job(5, {"openai": 1}, tenant_id="b"), job(5, {"search": 5}, tenant_id="b")),
        [("Accepted", "", "none"), ("Accepted", "", "none")],
    ),
    (
        "/system/jobs/batch/atomic",
        batch(job(5, {"search": 1}, tenant_id="b"), job(5, {"openai": 50}, tenant_id="b")),
        [
            ("Rejected", ATOMIC, "atomic_batch"),
            ("Rejected", "dependency 'openai' cost 50 exceeds capacity 10", "over_capacity"),
        ],
    ),
    (
        "/dashboard/jobs/batch",
        batch(
            job(5, {"openai": 3}, tenant_id="vip"),
            job(5, {"openai": 3}, tenant_id="vip"),
            job(5, {"search": 60}, tenant_id="c"),
            job(5, {"search": 40}, tenant_id="c"),
            job(1, {"search": 1}, tenant_id="c"),
        ),
        [
            ("Accepted", "", "none"),
            ("Rejected", RATE_LIMITED, "rate_limit"),
            ("Rejected", "tenant 'c' exceeded its share of dependency 'search'", "tenant_share"),
            ("Accepted", "", "none"),
            ("Rejected", TOO_LOW, "min_priority"),
        ],
    ),
    ("/system/jobs", single(5, {"openai": 2}, tenant_id="vip"), [("Accepted", "", "none")]),
    (
        "/dashboard/jobs/batch/atomic",
        batch(job(9, {"search": 1}, tenant_id="vip"), job(5, {"openai": 1}, tenant_id="vip")),
        [("Rejected", ATOMIC, "atomic_batch"), ("Rejected", RATE_LIMITED, "rate_limit")],
    ),
]
# What the accepted jobs took: openai 4 + 1 + 3 + 2, search 5 + 40; tenant a 4, b 1 and 5,
# c 40 (vip has no bucket of its own).
TOKENS_LEFT = {"openai": 0, "search": 55}
TENANT_TOKENS_LEFT = {
    ("openai", "a"): 1,
    ("openai", "b"): 4,
    ("search", "b"): 45,
    ("search", "c"): 10,
}


def answered(result: falcon.testing.Result) -> list[dict[str, Any]]:
    """The decisions of a job route's answer, in request order."""
    body = result.json
    decisions: list[dict[str, Any]] = (
        body if isinstance(body, list) else body.get("results", [body])
    )
    return decisions


def send_all(client: falcon.testing.TestClient, user_id: UUID) -> list[falcon.testing.Result]:
    """Send SEQUENCE as `user_id`, in order."""
    return [post_json(client, route, user_id, body) for route, body, _ in SEQUENCE]


def buckets(db: psycopg.Connection, user_id: UUID) -> tuple[list[Any], list[Any]]:
    """The user's token buckets and tenant buckets, their tokens included."""
    token_buckets = db.execute(
        "SELECT dependency, capacity, tokens FROM token_buckets WHERE user_id = %s ORDER BY 1",
        [user_id],
    ).fetchall()
    tenant_buckets = db.execute(
        "SELECT dependency, tenant_id, capacity, refill_per_second, tokens FROM tenant_buckets"
        " WHERE user_id = %s ORDER BY 1, 2",
        [user_id],
    ).fetchall()
    return token_buckets, tenant_buckets


def stored(db: psycopg.Connection, job_ids: list[str]) -> list[tuple[Any, ...]]:
    """status, reason, state, retry_after, shadow_status and shadow_reason of each job, in order."""
    columns = "status, reason, state, retry_after, shadow_status, shadow_reason"
    return [tuple(stored_job(db, job_id, columns).values()) for job_id in job_ids]


def shadow_counts(client: falcon.testing.TestClient) -> Counter[tuple[str, ...]]:
    """janus_shadow_decisions_total by (source, mode, outcome, reason), from GET /metrics."""
    answer = client.simulate_get("/metrics")
    assert answer.status_code == 200, answer.text
    return Counter(
        {
            tuple(sample.labels[name] for name in ("source", "mode", "outcome", "reason")): int(
                sample.value
            )
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples
            if sample.name == "janus_shadow_decisions_total"
        }
    )


def expected_shadow_counts() -> Counter[tuple[str, ...]]:
    """What SEQUENCE adds to janus_shadow_decisions_total."""
    counts: Counter[tuple[str, ...]] = Counter()
    for route, _, decisions in SEQUENCE:
        source = route.split("/")[1]
        mode = "atomic" if route.endswith("atomic") else "partial" if "batch" in route else "single"
        for status, _, reason_class in decisions:
            counts[(source, mode, status.lower(), reason_class)] += 1
    return counts


def test_shadow_mode_accepts_all_and_stores_what_enforcement_decides(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    enforcing = user_with_config(db, DEPENDENCIES, **CONFIG)
    shadowing = user_with_config(db, DEPENDENCIES, **CONFIG, mode="shadow")
    before = shadow_counts(app_client)

    enforced = send_all(app_client, enforcing)
    shadowed = send_all(app_client, shadowing)

    # Enforcement decides as the contract says.
    decisions = [[(d["status"], d["reason"]) for d in answered(result)] for result in enforced]
    assert decisions == [[(s, r) for s, r, _ in expected] for _, _, expected in SEQUENCE]
    # Shadow mode refuses nothing, and answers as for acceptances.
    for (route, _, expected), result in zip(SEQUENCE, shadowed, strict=True):
        assert result.status_code == (200 if route.endswith("/batch") else 202), result.text
        assert "Retry-After" not in result.headers
        assert [(d["status"], d["reason"]) for d in answered(result)] == [("Accepted", "")] * len(
            expected
        )
        if route.endswith("/batch"):
            assert (result.json["accepted"], result.json["rejected"]) == (len(expected), 0)

    # Every shadow job is stored accepted and queued, with enforcement's decision beside it.
    shadow_ids = [d["job_id"] for result in shadowed for d in answered(result)]
    flat = [decision for one in decisions for decision in one]
    assert stored(db, shadow_ids) == [
        ("Accepted", "", "queued", None, status, reason) for status, reason in flat
    ]
    # The job history shows each would-be decision over HTTP too.
    for job_id, (status, reason) in zip(shadow_ids, flat, strict=True):
        detail = app_client.simulate_get(
            f"/dashboard/jobs/{job_id}", headers={"X-User-ID": str(shadowing)}
        ).json
        assert (detail["status"], detail["shadow_status"], detail["shadow_reason"]) == (
            "Accepted",
            status,
            reason,
        )
    # Enforcement stores what it decided (an atomic rejection not at all), no shadow columns.
    enforce_ids = [
        d["job_id"]
        for (route, _, _), result in zip(SEQUENCE, enforced, strict=True)
        for d in answered(result)
        if result.status_code != 207
    ]
    assert len(enforce_ids) == 13
    assert all(row[4:] == (None, None) for row in stored(db, enforce_ids))
    assert db.execute(
        "SELECT count(*) FROM jobs WHERE user_id = %s AND shadow_status IS NOT NULL",
        [enforcing],
    ).fetchone() == (0,)

    # Both users' buckets end alike: shadow mode took what enforcement took, no more.
    assert buckets(db, shadowing) == buckets(db, enforcing)
    token_buckets, tenant_buckets = buckets(db, shadowing)
    assert {dep: tokens for dep, _, tokens in token_buckets} == TOKENS_LEFT
    assert {(dep, tenant): tokens for dep, tenant, _, _, tokens in tenant_buckets} == (
        TENANT_TOKENS_LEFT
    )
    for user_id in (enforcing, shadowing):
        quotas = app_client.simulate_get(
            "/dashboard/quotas", headers={"X-User-ID": str(user_id)}
        ).json["quotas"]
        assert {q["dependency"]: float(q["tokens"]) for q in quotas} == TOKENS_LEFT

    # The metrics count the would-be decisions of the shadow user only.
    after = shadow_counts(app_client)
    assert after - before == expected_shadow_counts()


def test_a_replay_in_shadow_mode_is_not_decided_again(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, DEPENDENCIES, **CONFIG, mode="shadow")
    body = batch(job(5, {"openai": 4}, tenant_id="a"), job(5, {"openai": 4}, tenant_id="a"))
    key = {"Idempotency-Key": "once"}
    first = post_json(app_client, "/system/jobs/batch", user_id, body, key)
    before = shadow_counts(app_client)
    again = post_json(app_client, "/system/jobs/batch", user_id, body, key)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert answered(again) == answered(first)
    assert shadow_counts(app_client) == before
    # Only the first is stored and debited: a's 5 tokens of openai less 4.
    ids = [d["job_id"] for d in answered(first)]
    assert [row[4:] for row in stored(db, ids)] == [
        ("Accepted", ""),
        ("Rejected", "tenant 'a' exceeded its share of dependency 'openai'"),
    ]
    assert buckets(db, user_id)[1] == [("openai", "a", 5, 0, 1)]


def test_settling_a_job_enforcement_would_refuse_moves_no_token(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """A job only shadow mode let in took no token, so its real cost settles against none:
    the buckets keep following what enforcement would have done."""
    dependencies = {"openai": {"capacity": 10, "refill_per_second": 0}}
    enforcing = user_with_config(db, dependencies)
    shadowing = user_with_config(db, dependencies, mode="shadow")
    for user_id in (enforcing, shadowing):
        taken = single(5, {"openai": 8}, batch_name="taken")
        assert post_json(app_client, "/system/jobs", user_id, taken).status_code == 202
        refused = single(5, {"openai": 5}, batch_name="refused")
        post_json(app_client, "/system/jobs", user_id, refused)
        post_json(app_client, "/system/jobs", user_id, refused)

    # The two jobs enforcement refused ran anyway: one cost nothing, one more than it said.
    first, second = claim(app_client, shadowing, batch_name="refused", limit=2)
    for leased, cost in ((first, 0), (second, 9)):
        done = lease_call(app_client, shadowing, leased, "complete", actual_costs={"openai": cost})
        assert done.status_code == 200, done.text
        assert job_row(db, leased["job_id"])["actual_costs"] == {"openai": cost}
    assert buckets(db, shadowing) == buckets(db, enforcing)

    # The job both accepted settles alike: 8 charged, 3 spent, 5 given back.
    for user_id in (enforcing, shadowing):
        [leased] = claim(app_client, user_id, batch_name="taken")
        done = lease_call(app_client, user_id, leased, "complete", actual_costs={"openai": 3})
        assert done.status_code == 200, done.text
    assert buckets(db, shadowing) == buckets(db, enforcing)
    assert buckets(db, shadowing)[0] == [("openai", 10, 7)]
