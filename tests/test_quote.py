"""POST .../jobs/quote: the answer the real request would get now, with no side effect.

A quote followed at once by the same real request gives the same decisions (rejections
included, Retry-After and all); a quote changes no row of any table and no sequence; it is
refused as the real routes refuse; it answers a remembered Idempotency-Key as the real
request would and remembers none; its fits_at agrees with its retry_after; and over real
gunicorn it holds no lock once answered.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import falcon.testing
import psycopg
import pytest
import requests
from psycopg import sql

from tests.conftest import GunicornServer
from tests.support.answers import RATE_LIMITED, assert_clear_error
from tests.support.app import PREFIXES, post_json
from tests.support.bodies import batch, job, single
from tests.support.factories import create_user, user_with_config

# openai refills a token a second, so a Retry-After is a whole number of seconds from a debit;
# search never refills. Tenant `small` has a fifth of each: openai 2 (0.2/s), search 20.
DEPENDENCIES = {
    "openai": {"capacity": 10, "refill_per_second": 1},
    "search": {"capacity": 100, "refill_per_second": 0},
}
CONFIG: dict[str, Any] = {"min_priority": 3, "tenant_overrides": {"small": 0.2}}

Decision = tuple[str, str, int | None]


def fresh_user(db: psycopg.Connection, **config: Any) -> UUID:
    """A new user with CONFIG (changed by `config`): full buckets, nothing decided yet."""
    return user_with_config(db, DEPENDENCIES, **{**CONFIG, **config})


def snapshot(db: psycopg.Connection) -> dict[str, list[str]]:
    """Every row of every table of the public schema (but alembic_version), and every
    sequence's state: what a quote must leave exactly as it found it."""
    relations = db.execute(
        "SELECT c.relname, c.relkind FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S')"
        " AND c.relname <> 'alembic_version' ORDER BY c.relname"
    ).fetchall()
    tables = {}
    for name, kind in relations:
        # As text, sorted: json columns have no ordering to ORDER BY.
        query = (
            sql.SQL("SELECT last_value::text || '/' || is_called::text FROM {}")
            if kind == "S"
            else sql.SQL("SELECT t::text FROM {} t")
        )
        tables[name] = sorted(row[0] for row in db.execute(query.format(sql.Identifier(name))))
    assert {"jobs", "token_buckets", "tenant_buckets", "idempotency_keys"} <= set(tables)
    return tables


def quote(
    client: falcon.testing.TestClient,
    prefix: str,
    user_id: UUID,
    body: Any,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST `body` to `prefix`/quote; the 200 answer's body."""
    result = post_json(client, f"{prefix}/quote", user_id, body, headers)
    assert result.status_code == 200, result.text
    answer: dict[str, Any] = result.json
    return answer


def quoted(answer: dict[str, Any]) -> list[Decision]:
    """A quote's decisions as (status, reason, retry_after)."""
    return [(r["status"], r["reason"], r["retry_after"]) for r in answer["results"]]


def real(
    client: falcon.testing.TestClient,
    db: psycopg.Connection,
    path: str,
    user_id: UUID,
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, list[Decision], falcon.testing.Result]:
    """POST `body` to the real route `path`: its status and decisions, each with the
    Retry-After stored for it (the job rows; an atomic rejection stores none and has none)."""
    result = post_json(client, path, user_id, body, headers)
    assert result.status_code in (200, 202, 207, 429), result.text
    answers = result.json
    if isinstance(answers, dict):
        answers = answers.get("results", [answers])
    stored: dict[UUID, int | None] = dict(
        db.execute(
            "SELECT job_id, retry_after FROM jobs WHERE job_id = ANY(%s)",
            [[UUID(a["job_id"]) for a in answers]],
        ).fetchall()
    )
    decisions = [(a["status"], a["reason"], stored.get(UUID(a["job_id"]))) for a in answers]
    return result.status_code, decisions, result


def route_of(prefix: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The real route a quote body stands for, and the body that route takes."""
    if "jobs" not in body:
        return prefix, body
    real_body = {name: value for name, value in body.items() if name != "atomic"}
    return f"{prefix}/batch/atomic" if body.get("atomic") else f"{prefix}/batch", real_body


SMALL_SHARE = "tenant 'small' exceeded its share of dependency 'openai'"
SMALL_SEARCH = "tenant 'small' exceeded its share of dependency 'search'"
TOO_LOW = "priority too low"
UNKNOWN = "dependency 'nope' is not configured"
OVER = "dependency 'openai' cost 11 exceeds capacity 10"
ATOMIC = "batch rejected atomically"

# (name, what the real routes are sent first, the quoted body, the decisions expected).
# Each runs on a fresh user, so a debit is made from a full bucket: a wait is then whole
# seconds less the time since, and rounds up to the same Retry-After for a second.
SCENARIOS: list[tuple[str, list[dict[str, Any]], dict[str, Any], list[Decision]]] = [
    ("single accepted", [], single(5, {"openai": 1}), [("Accepted", "", None)]),
    (
        "single rate limit",
        [single(5, {"openai": 8})],
        single(5, {"openai": 5}),
        [("Rejected", RATE_LIMITED, 3)],
    ),
    (
        "single tenant share",
        [single(5, {"openai": 2}, tenant_id="small")],
        single(5, {"openai": 1}, tenant_id="small"),
        [("Rejected", SMALL_SHARE, 5)],
    ),
    ("single priority too low", [], single(2, {"openai": 1}), [("Rejected", TOO_LOW, None)]),
    ("single unknown dependency", [], single(5, {"nope": 1}), [("Rejected", UNKNOWN, None)]),
    (
        "partial",
        [single(5, {"openai": 8})],
        batch(
            job(5, {"search": 10}),
            job(1, {"search": 1}),
            job(5, {"nope": 1}),
            job(5, {"search": 30}, tenant_id="small"),
            job(5, {"openai": 5}),
            job(5, {"openai": 11}),
        ),
        [
            ("Accepted", "", None),
            ("Rejected", TOO_LOW, None),
            ("Rejected", UNKNOWN, None),
            ("Rejected", SMALL_SEARCH, None),
            ("Rejected", RATE_LIMITED, 3),
            ("Rejected", OVER, None),
        ],
    ),
    (
        "atomic accepted",
        [],
        {**batch(job(5, {"openai": 1}), job(6, {"search": 5})), "atomic": True},
        [("Accepted", "", None), ("Accepted", "", None)],
    ),
    (
        "atomic 207",
        [single(5, {"openai": 8})],
        {**batch(job(5, {"search": 1}), job(5, {"openai": 5})), "atomic": True},
        [("Rejected", ATOMIC, None), ("Rejected", RATE_LIMITED, None)],
    ),
]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(
    ("first", "body", "expected"),
    [scenario[1:] for scenario in SCENARIOS],
    ids=[scenario[0] for scenario in SCENARIOS],
)
def test_a_quote_then_the_real_request_decide_alike_and_the_quote_changes_nothing(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    prefix: str,
    first: list[dict[str, Any]],
    body: dict[str, Any],
    expected: list[tuple[str, str, int | None]],
) -> None:
    user_id = fresh_user(db)
    for setup in first:
        assert post_json(app_client, prefix, user_id, setup).status_code == 202
    before = snapshot(db)
    answer = quote(app_client, prefix, user_id, body)
    assert snapshot(db) == before
    path, real_body = route_of(prefix, body)
    status, decisions, result = real(app_client, db, path, user_id, real_body)

    assert quoted(answer) == decisions == expected
    assert answer["status"] == status
    assert answer["kind"] == {prefix: "single", f"{prefix}/batch": "partial"}.get(path, "atomic")
    accepted = sum(decision[0] == "Accepted" for decision in decisions)
    assert (answer["total"], answer["accepted"], answer["rejected"]) == (
        len(decisions),
        accepted,
        len(decisions) - accepted,
    )
    assert answer["replayed"] is False
    assert all(r["shadow_status"] is r["shadow_reason"] is None for r in answer["results"])
    if path == prefix and decisions[0][2] is not None:
        assert answer["results"][0]["retry_after"] == int(result.headers["Retry-After"])
    # Each rejection's code, as the real request tells it (a single job in its header).
    for one in answer["results"]:
        assert (one["reason_code"] is None) == (one["status"] == "Accepted"), one
    if path == prefix and decisions[0][0] == "Rejected":
        assert answer["results"][0]["reason_code"] == result.headers["Janus-Reason-Code"]


def test_a_series_of_quotes_on_both_families_changes_no_table(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """Every kind of quote, one after another, with and without an unused Idempotency-Key."""
    user_id = fresh_user(db)
    assert (
        post_json(app_client, "/system/jobs", user_id, single(5, {"openai": 8})).status_code == 202
    )
    before = snapshot(db)
    for prefix in PREFIXES:
        for n, (_, _, body, _) in enumerate(SCENARIOS):
            quote(app_client, prefix, user_id, body)
            quote(app_client, prefix, user_id, body, {"Idempotency-Key": f"never-used-{n}"})
    assert snapshot(db) == before


# Bodies POST .../jobs refuses with 400, and those POST .../jobs/batch refuses.
BAD_SINGLES = [
    single(0),
    single(11),
    {**single(), "priority": "5"},
    single(tenant_id=""),
    single(5, {"openai": 0}),
    single(5, {"": 1}),
    {**single(), "payload": [1]},
    {**single(), "payload": "{}"},
    {**single(), "unknown": 1},
    {key: value for key, value in single().items() if key != "batch_name"},
    {key: value for key, value in single().items() if key != "priority"},
    single(tenant_id="a\x00b"),
]
BAD_BATCHES = [
    batch(),
    batch(job(0)),
    batch(job(5, {"openai": -1})),
    batch(job(5), {"priority": 5}),
    {**batch(job(5)), "unknown": 1},
    {"jobs": [job(5)]},
    {"batch_name": "b", "jobs": {"tenant_id": "t"}},
    batch(*[job(5)] * 1001),
]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_what_the_real_routes_refuse_with_400_the_quote_refuses_alike(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, prefix: str
) -> None:
    user_id = fresh_user(db)
    before = snapshot(db)
    for path, bodies in ((prefix, BAD_SINGLES), (f"{prefix}/batch", BAD_BATCHES)):
        for body in bodies:
            refused = assert_clear_error(post_json(app_client, path, user_id, body), 400)
            quoted_refusal = assert_clear_error(
                post_json(app_client, f"{prefix}/quote", user_id, body), 400
            )
            assert set(quoted_refusal.get("errors", {})) == set(refused.get("errors", {})), body
    # An atomic quote is refused as the atomic route refuses.
    for body in BAD_BATCHES:
        assert_clear_error(post_json(app_client, f"{prefix}/batch/atomic", user_id, body), 400)
        assert_clear_error(
            post_json(app_client, f"{prefix}/quote", user_id, {**body, "atomic": True}), 400
        )
    assert snapshot(db) == before


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({**batch(job(5)), "tenant_id": "t", "priority": 5}, {"tenant_id", "priority"}),
        ({**single(), "atomic": True}, {"atomic"}),
        ({**single(), "atomic": False}, {"atomic"}),
        ({"batch_name": "b", "priority": 5}, {"tenant_id"}),
        ({"batch_name": "b"}, {"tenant_id", "priority"}),
        ({**batch(job(5)), "atomic": "true"}, {"atomic"}),
    ],
)
def test_a_body_of_neither_shape_is_refused_naming_its_fields(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    body: dict[str, Any],
    fields: set[str],
) -> None:
    user_id = fresh_user(db)
    for prefix in PREFIXES:
        refusal = assert_clear_error(post_json(app_client, f"{prefix}/quote", user_id, body), 400)
        assert set(refusal["errors"]) == fields


def test_a_quote_is_refused_as_the_real_request_for_user_and_media(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    paused = fresh_user(db, paused=True)
    without_config = create_user(db)
    active = fresh_user(db)
    for prefix in PREFIXES:
        path = f"{prefix}/quote"
        for route in (prefix, path):
            assert_clear_error(post_json(app_client, route, uuid4(), single()), 401)
            assert_clear_error(post_json(app_client, route, "not-a-uuid", single()), 401)
            assert_clear_error(post_json(app_client, route, paused, single()), 403)
            assert_clear_error(post_json(app_client, route, without_config, single()), 403)
            assert_clear_error(
                app_client.simulate_post(
                    route,
                    body="<job/>",
                    headers={"X-User-ID": str(active), "Content-Type": "application/xml"},
                ),
                415,
            )
            assert_clear_error(
                post_json(app_client, route, active, {**single(), "payload": {"x": "y" * 2**20}}),
                413,
            )
            assert_clear_error(
                post_json(app_client, route, active, single(), {"Idempotency-Key": "x" * 256}), 400
            )


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(
    "body",
    [
        single(5, {"openai": 1}, payload={"n": 1, "s": "é"}),
        single(5),
        batch(job(5, {"openai": 1}, payload={"n": [1]}), job(1, {"search": 1})),
        {**batch(job(5, {"openai": 1}), job(6, {"search": 1})), "atomic": True},
    ],
    ids=["single", "single without dependencies", "partial", "atomic"],
)
def test_a_quote_answers_a_remembered_key_as_the_real_request_would(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, prefix: str, body: dict[str, Any]
) -> None:
    user_id = fresh_user(db)
    key = {"Idempotency-Key": f"remembered-{uuid4()}"}
    path, real_body = route_of(prefix, body)
    status, decisions, _ = real(app_client, db, path, user_id, real_body, key)
    before = snapshot(db)

    answer = quote(app_client, prefix, user_id, body, key)
    replayed = post_json(app_client, path, user_id, real_body, key)
    assert snapshot(db) == before

    assert answer["replayed"] is True
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert answer["status"] == status == replayed.status_code
    # A replay tells the remembered decisions, without a Retry-After.
    assert [(s, r) for s, r, _ in quoted(answer)] == [(s, r) for s, r, _ in decisions]
    assert all(r["retry_after"] is r["fits_at"] is None for r in answer["results"])

    # The same key with another body, or the same body for another route, is a 422.
    other = single(5, {"openai": 2}) if "jobs" not in body else {**body, "batch_name": "other"}
    assert_clear_error(post_json(app_client, f"{prefix}/quote", user_id, other, key), 422)
    assert_clear_error(post_json(app_client, path, user_id, route_of(prefix, other)[1], key), 422)
    if "jobs" in body:
        flipped = {**body, "atomic": not body.get("atomic", False)}
        assert_clear_error(post_json(app_client, f"{prefix}/quote", user_id, flipped, key), 422)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_quote_never_remembers_its_key(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, prefix: str
) -> None:
    user_id = fresh_user(db)
    key = {"Idempotency-Key": "quoted-only"}
    for _ in range(2):
        answer = quote(app_client, prefix, user_id, single(5, {"openai": 1}), key)
        assert answer["replayed"] is False
        assert quoted(answer) == [("Accepted", "", None)]
    assert db.execute("SELECT count(*) FROM idempotency_keys").fetchone() == (0,)
    # So the key is free for any request, and the real one is decided, not replayed.
    result = post_json(app_client, prefix, user_id, single(5, {"openai": 2}), key)
    assert result.status_code == 202
    assert "Idempotent-Replayed" not in result.headers


def db_now(db: psycopg.Connection) -> datetime:
    row = db.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    now: datetime = row[0]
    return now


@pytest.mark.parametrize("prefix", PREFIXES)
def test_fits_at_is_when_the_retry_after_ends(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, prefix: str
) -> None:
    user_id = fresh_user(db)
    assert post_json(app_client, prefix, user_id, single(5, {"openai": 8})).status_code == 202
    body = batch(
        job(5, {"openai": 5}),  # 3 short: 3 s
        job(5, {"openai": 1}, tenant_id="small"),  # fits both buckets
        job(5, {"openai": 2}, tenant_id="small"),  # 1 short of small's 2 - 1: 5 s
        job(5, {"openai": 3}, tenant_id="small"),  # more than small's 2 ever holds: never
        job(2, {"openai": 1}),  # priority too low: waiting does not help
    )
    start = db_now(db)
    results = quote(app_client, prefix, user_id, body)["results"]
    end = db_now(db)

    assert [r["retry_after"] for r in results] == [3, None, 5, None, None]
    for result in results:
        if result["retry_after"] is None:
            assert result["fits_at"] is None, result
            continue
        fits_at = datetime.fromisoformat(result["fits_at"])
        # retry_after rounds the wait up to whole seconds: fits_at is within its last second.
        wait = timedelta(seconds=result["retry_after"])
        assert start + wait - timedelta(seconds=1) < fits_at <= end + wait, (start, end, result)

    # Through an Idempotency-Key not yet used, the same decisions and the same waits.
    keyed = quote(app_client, prefix, user_id, body, {"Idempotency-Key": "fresh"})["results"]
    assert [r["retry_after"] for r in keyed] == [3, None, 5, None, None]
    assert [r["fits_at"] is None for r in keyed] == [r["fits_at"] is None for r in results]
    assert datetime.fromisoformat(keyed[0]["fits_at"]) >= datetime.fromisoformat(
        results[0]["fits_at"]
    )

    # An atomic rejection tells no wait at all.
    atomic = quote(app_client, prefix, user_id, {**body, "atomic": True})
    assert all(r["retry_after"] is r["fits_at"] is None for r in atomic["results"])


def test_a_job_quoted_to_fit_at_fits_at_is_accepted_then(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = fresh_user(db)
    assert (
        post_json(app_client, "/dashboard/jobs", user_id, single(5, {"openai": 9})).status_code
        == 202
    )
    [result] = quote(app_client, "/dashboard/jobs", user_id, single(5, {"openai": 2}))["results"]
    assert (result["status"], result["retry_after"]) == ("Rejected", 1)
    fits_at = datetime.fromisoformat(result["fits_at"])
    time.sleep(max(0.0, (fits_at - db_now(db)).total_seconds()) + 0.01)
    [result] = quote(app_client, "/dashboard/jobs", user_id, single(5, {"openai": 2}))["results"]
    assert (result["status"], result["fits_at"]) == ("Accepted", None)
    assert (
        post_json(app_client, "/dashboard/jobs", user_id, single(5, {"openai": 2})).status_code
        == 202
    )


def test_a_quote_in_shadow_mode_accepts_and_tells_enforcements_decision(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = fresh_user(db, mode="shadow")
    body = batch(job(5, {"openai": 11}), job(2, {"openai": 1}), job(5, {"openai": 10}))
    before = snapshot(db)
    answer = quote(app_client, "/system/jobs", user_id, body)
    assert snapshot(db) == before
    assert (answer["status"], answer["accepted"], answer["rejected"]) == (200, 3, 0)
    assert [
        (r["shadow_status"], r["shadow_reason"], r["shadow_reason_code"]) for r in answer["results"]
    ] == [
        ("Rejected", OVER, "over_capacity"),
        ("Rejected", TOO_LOW, "min_priority"),
        ("Accepted", "", None),
    ]
    assert all(
        (r["status"], r["reason"], r["reason_code"], r["retry_after"], r["fits_at"])
        == ("Accepted", "", None, None, None)
        for r in answer["results"]
    )


def test_a_quote_over_gunicorn_holds_no_lock_once_answered(
    gunicorn_server: GunicornServer, db: psycopg.Connection, database_url: str
) -> None:
    user_id = fresh_user(db, tenant_share=0.5)
    headers = {"X-User-ID": str(user_id), "Idempotency-Key": "held?"}
    url = f"{gunicorn_server.url}/system/jobs"
    body = single(5, {"openai": 1})
    answer = requests.post(f"{url}/quote", json=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text

    # Nothing waits: the bucket rows and the key's advisory lock are free at once.
    with psycopg.connect(database_url) as other:
        other.execute("SET lock_timeout = '500ms'")
        buckets = other.execute(
            "SELECT 1 FROM token_buckets WHERE user_id = %s FOR UPDATE NOWAIT", [user_id]
        ).fetchall()
        assert len(buckets) == 2
        row = other.execute(
            "SELECT pg_try_advisory_xact_lock(hashtextextended(%s::text || '/held?', 0))",
            [user_id],
        ).fetchone()
        assert row == (True,)
        other.rollback()
    idle = db.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database()"
        " AND state IN ('idle in transaction', 'idle in transaction (aborted)')"
    ).fetchone()
    assert idle == (0,)
    started = time.monotonic()
    admitted = requests.post(url, json=body, headers=headers, timeout=10)
    assert admitted.status_code == 202, admitted.text
    assert time.monotonic() - started < 2


def test_a_payload_counts_for_the_key_as_written_as_for_the_real_request(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = fresh_user(db)
    written = '{"batch_name": "b", "jobs": [{"tenant_id": "t", "priority": 5, "payload": %s}]}'

    def send(path: str, payload: str) -> falcon.testing.Result:
        return app_client.simulate_post(
            path,
            body=written % payload,
            headers={"X-User-ID": str(user_id), "Idempotency-Key": "as-written"},
        )

    assert send("/system/jobs/batch", '{"n": 1.10}').status_code == 200
    assert send("/system/jobs/quote", '{"n": 1.10}').json["replayed"] is True
    # The same value written otherwise is another request, as it is for the real route.
    assert_clear_error(send("/system/jobs/quote", '{"n": 1.1}'), 422)
    assert_clear_error(send("/system/jobs/batch", '{"n": 1.1}'), 422)
