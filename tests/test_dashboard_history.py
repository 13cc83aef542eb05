"""The dashboard's reads: GET /dashboard/jobs (history, filters, keyset pages), GET
/dashboard/jobs/{job_id}, GET /dashboard/quotas; in-process, and once through gunicorn."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import falcon.testing
import psycopg
import pytest
import requests

from janus.db import queries
from janus.history import PAGE_READS_AT_MOST
from janus.quotas import TENANT_QUOTAS_SHOWN
from tests.conftest import StartGunicorn
from tests.support.answers import assert_clear_error
from tests.support.app import headers_for, post_json
from tests.support.bodies import single
from tests.support.factories import activate_config, create_user, user_with_config
from tests.support.history import HISTORY, QUOTAS, insert_jobs
from tests.support.plans import plan_nodes
from tests.support.queue import claim, queued_job

ITEM_KEYS = [
    "job_id", "created_at", "source", "batch_name", "tenant_id", "priority", "status",
    "reason", "reason_code", "retry_after", "state", "attempts", "estimated_start",
]  # fmt: skip
DETAIL_KEYS = [
    *ITEM_KEYS, "dependencies", "payload", "lease_expires_at", "finished_at", "actual_costs",
    "run_at", "in_line_at", "expires_at", "result", "error", "config_version", "shadow_status",
    "shadow_reason", "shadow_reason_code",
]  # fmt: skip
QUOTA_KEYS = [
    "dependency", "capacity", "refill_per_second", "effective_refill_per_second", "adaptive",
    "tokens", "full_in_seconds",
]  # fmt: skip
TENANT_QUOTA_KEYS = [
    "dependency", "tenant_id", "share", "capacity", "refill_per_second", "tokens",
    "full_in_seconds",
]  # fmt: skip


def _get(client: falcon.testing.TestClient, path: str, user_id: UUID, **params: Any) -> Any:
    return client.simulate_get(path, params=params or None, headers=headers_for(user_id))


def _page(client: falcon.testing.TestClient, user_id: UUID, **params: Any) -> dict[str, Any]:
    answer = _get(client, HISTORY, user_id, **params)
    assert answer.status_code == 200, answer.text
    assert list(answer.json) == ["jobs", "next"]
    page: dict[str, Any] = answer.json
    return page


def _ids(page: dict[str, Any]) -> list[UUID]:
    return [UUID(job["job_id"]) for job in page["jobs"]]


def _all_pages(client: falcon.testing.TestClient, user_id: UUID, **params: Any) -> list[UUID]:
    seen: list[UUID] = []
    cursor = None
    while True:
        page = _page(client, user_id, **params, **({"cursor": cursor} if cursor else {}))
        seen += _ids(page)
        cursor = page["next"]
        if cursor is None:
            return seen


# --- GET /dashboard/jobs ---


def test_the_history_lists_both_sources_newest_first_with_each_decision(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    first = post_json(app_client, "/dashboard/jobs", ten_token_user, queued_job({"openai": 4}))
    second = post_json(
        app_client, "/system/jobs", ten_token_user, queued_job({"openai": 4}, priority=9)
    )
    rejected = post_json(app_client, "/system/jobs", ten_token_user, queued_job({"openai": 4}))
    assert [first.status_code, second.status_code, rejected.status_code] == [202, 202, 429]
    claim(app_client, ten_token_user)  # the priority 9 job

    jobs = _page(app_client, ten_token_user)["jobs"]

    assert [job["job_id"] for job in jobs] == [
        rejected.json["job_id"], second.json["job_id"], first.json["job_id"]
    ]  # fmt: skip
    assert all(list(job) == ITEM_KEYS for job in jobs)
    newest, running, queued = jobs
    assert newest["status"] == "Rejected" and newest["state"] is None
    assert newest["reason"] == "dependency 'openai' rate limit exceeded"
    assert (newest["reason_code"], queued["reason_code"]) == ("rate_limit", None)
    assert newest["retry_after"] is None  # refill 0: waiting cannot cure it
    assert newest["source"] == "system" and queued["source"] == "dashboard"
    assert (running["state"], running["attempts"], running["priority"]) == ("running", 1, 9)
    assert (queued["state"], queued["attempts"], queued["reason"]) == ("queued", 0, "")
    assert queued["tenant_id"] == "tenant-a" and queued["batch_name"] == "batch-a"
    assert datetime.fromisoformat(queued["created_at"]).tzinfo is not None


def test_each_filter_keeps_only_its_jobs(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    now = datetime.now(UTC)
    old = insert_jobs(db, ten_token_user, 3, newest=now - timedelta(hours=2))
    rejected = insert_jobs(db, ten_token_user, 2, newest=now, status="Rejected", state=None)
    queued = insert_jobs(db, ten_token_user, 2, newest=now, state="queued", tenant_id="tenant-b")
    failed = insert_jobs(db, ten_token_user, 2, newest=now, state="failed", batch_name="batch-b")
    system = insert_jobs(db, ten_token_user, 2, newest=now, source="system")
    other_user = user_with_config(db, {})
    insert_jobs(db, other_user, 5, newest=now, status="Rejected", state=None)

    def only(**params: Any) -> set[UUID]:
        return set(_ids(_page(app_client, ten_token_user, limit=100, **params)))

    assert only(status="Rejected") == set(rejected)
    assert only(status="Accepted") == set(old + queued + failed + system)
    assert only(state="queued") == set(queued)
    assert only(state="failed") == set(failed)
    assert only(state="running") == set()
    assert only(tenant_id="tenant-b") == set(queued)
    assert only(batch_name="batch-b") == set(failed)
    assert only(source="system") == set(system)
    hour_ago = (now - timedelta(hours=1)).isoformat()
    assert only(until=hour_ago) == set(old)
    assert only(since=hour_ago) == set(rejected + queued + failed + system)
    assert only(since=hour_ago, status="Rejected") == set(rejected)
    # since is inclusive, until exclusive: the newest old job sits exactly on the bound.
    edge = (now - timedelta(hours=2)).isoformat()
    assert old[0] in only(since=edge) and old[0] not in only(until=edge)
    assert only(tenant_id="nobody") == set()


def test_pages_follow_the_cursor_without_repeats_or_gaps_while_jobs_arrive(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    now = datetime.now(UTC)
    older = insert_jobs(db, ten_token_user, 12, newest=now - timedelta(seconds=100))
    # Five jobs stored at the very same moment straddle a page boundary: job_id breaks the tie.
    tied = insert_jobs(db, ten_token_user, 5, newest=now - timedelta(seconds=50), spacing_s=0)
    newer = insert_jobs(db, ten_token_user, 8, newest=now)
    expected = _all_pages(app_client, ten_token_user, limit=100)
    assert len(expected) == 25 and len(set(expected)) == 25
    assert set(expected) == set(older + tied + newer)
    assert expected[8:13] == sorted(tied, key=str, reverse=True)

    seen: list[UUID] = []
    page = _page(app_client, ten_token_user, limit=10)
    while True:
        seen += _ids(page)
        # Jobs stored between two pages are newer than every job shown: never in a later page.
        insert_jobs(db, ten_token_user, 3, newest=datetime.now(UTC) + timedelta(minutes=1))
        if page["next"] is None:
            break
        page = _page(app_client, ten_token_user, limit=10, cursor=page["next"])
    assert seen == expected


def test_limit_defaults_to_20_and_the_last_page_has_no_next(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    insert_jobs(db, ten_token_user, 21)
    first = _page(app_client, ten_token_user)
    assert len(first["jobs"]) == 20 and first["next"]
    second = _page(app_client, ten_token_user, cursor=first["next"])
    assert len(second["jobs"]) == 1 and second["next"] is None
    # Exactly a page's worth: no next, rather than an empty page after it.
    assert _page(app_client, ten_token_user, limit=21)["next"] is None
    assert _page(app_client, create_user(db)) == {"jobs": [], "next": None}


def test_a_page_reads_a_bounded_number_of_jobs_and_a_rare_match_is_found_by_its_next(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    """Filters no index serves (source, status=Accepted) are checked on at most
    PAGE_READS_AT_MOST jobs a page: beyond them a page ends short, even empty, with a `next`
    that starts below the last job read. Following it finds every match once, in order."""
    now = datetime.now(UTC)
    # The oldest: one dashboard job accepted, then one rejected.
    old = insert_jobs(db, ten_token_user, 2, newest=now - timedelta(hours=1), spacing_s=1)
    insert_jobs(db, ten_token_user, 1, newest=now - timedelta(minutes=59), source="system",
                status="Rejected", state=None)  # fmt: skip
    # Then more jobs than a page reads, none of which the filters below match.
    insert_jobs(db, ten_token_user, PAGE_READS_AT_MOST + 200, newest=now, spacing_s=1e-3,
                source="system", status="Rejected", state=None)  # fmt: skip

    first = _page(app_client, ten_token_user, source="dashboard", limit=5)
    assert first["jobs"] == [] and first["next"]
    assert _all_pages(app_client, ten_token_user, source="dashboard", limit=5) == old
    assert _all_pages(app_client, ten_token_user, status="Accepted", limit=1) == old
    # Filters an index serves fill their pages: the rejected jobs, a full page and a next.
    rejected = _page(app_client, ten_token_user, status="Rejected", limit=100)
    assert len(rejected["jobs"]) == 100 and rejected["next"]


def _cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"bogus": "1"}, "bogus"),
        ({"Status": "Accepted"}, "Status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "1.0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"limit": ["1", "2"]}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": ""}, "cursor"),
        ({"cursor": _cursor_of("1700000000000000")}, "cursor"),
        ({"cursor": _cursor_of(f"1700000000000000,{uuid4()},x")}, "cursor"),
        ({"cursor": _cursor_of(f"99999999999999999999,{uuid4()}")}, "cursor"),
        ({"cursor": _cursor_of(f"1700000000000000,{str(uuid4()).upper()}")}, "cursor"),
        ({"cursor": _cursor_of(f"1700000000000000,{uuid4()}") + "=="}, "cursor"),
        ({"status": "accepted"}, "status"),
        ({"status": ""}, "status"),
        ({"state": "done"}, "state"),
        ({"source": "web"}, "source"),
        ({"tenant_id": ""}, "tenant_id"),
        ({"tenant_id": "x" * 256}, "tenant_id"),
        ({"batch_name": "a\x00b"}, "batch_name"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2025-01-31T09:00:00"}, "since"),
        ({"since": "2025-01-31"}, "since"),
        ({"until": "2025-01-31T09:00:00 01:00"}, "until"),
        ({"since": "2025-02-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "until"),
        ({"since": "2025-02-01T00:00:00Z", "until": "2025-02-01T01:00:00+01:00"}, "until"),
    ],
)
def test_bad_query_parameters_are_400_naming_the_field(
    app_client: falcon.testing.TestClient, ten_token_user: UUID, params: dict[str, Any], field: str
) -> None:
    body = assert_clear_error(_get(app_client, HISTORY, ten_token_user, **params), 400)
    assert list(body["errors"]) == [field], body


def test_every_bad_parameter_is_named_in_one_answer(
    app_client: falcon.testing.TestClient, ten_token_user: UUID
) -> None:
    answer = _get(
        app_client, HISTORY, ten_token_user, limit="0", status="done", cursor="x", since="now"
    )
    body = assert_clear_error(answer, 400)
    assert sorted(body["errors"]) == ["cursor", "limit", "since", "status"]
    assert body["errors"]["limit"] == ["Must be an integer from 1 to 100."]


def test_a_cursor_of_an_earlier_answer_still_works_after_its_job_is_deleted(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    jobs = insert_jobs(db, ten_token_user, 5)
    first = _page(app_client, ten_token_user, limit=2)
    db.execute("DELETE FROM jobs WHERE job_id = %s", [jobs[1]])
    assert _ids(_page(app_client, ten_token_user, limit=10, cursor=first["next"])) == jobs[2:]


def test_unauthenticated_and_unknown_users_are_401(app_client: falcon.testing.TestClient) -> None:
    for path in (HISTORY, f"{HISTORY}/{uuid4()}", QUOTAS):
        assert_clear_error(app_client.simulate_get(path), 401)
        assert_clear_error(app_client.simulate_get(path, headers=headers_for(uuid4())), 401)
        assert_clear_error(app_client.simulate_get(path, headers=headers_for("nope")), 401)


def test_posting_a_job_still_works_beside_the_listing(
    app_client: falcon.testing.TestClient, ten_token_user: UUID
) -> None:
    answer = post_json(app_client, HISTORY, ten_token_user, queued_job({"openai": 1}))
    assert answer.status_code == 202
    assert _ids(_page(app_client, ten_token_user)) == [UUID(answer.json["job_id"])]
    assert_clear_error(
        app_client.simulate_delete(HISTORY, headers=headers_for(ten_token_user)), 405
    )


# --- GET /dashboard/jobs/{job_id} ---


def test_one_job_shows_everything_stored_with_its_payload_as_sent(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    payload = '{"price": 1.10, "big": 123456789012345678901234567890, "huge": 1e400}'
    body = (
        '{"batch_name": "b", "tenant_id": "t", "priority": 7, "dependencies": {"openai": 2},'
        f' "payload": {payload}}}'
    )
    answer = app_client.simulate_post(
        "/system/jobs", body=body, headers=headers_for(ten_token_user)
    )
    assert answer.status_code == 202, answer.text
    job_id = answer.json["job_id"]
    [leased] = claim(app_client, ten_token_user)
    done = app_client.simulate_post(
        f"/system/jobs/{job_id}/complete",
        body=f'{{"lease_token": "{leased["lease_token"]}", "result": {{"ok": 1.50}},'
        ' "actual_costs": {"openai": 1}}',
        headers=headers_for(ten_token_user),
    )
    assert done.status_code == 200, done.text

    got = _get(app_client, f"{HISTORY}/{job_id}", ten_token_user)

    assert got.status_code == 200, got.text
    assert list(got.json) == DETAIL_KEYS
    assert f'"payload": {payload}' in got.text
    assert '"result": {"ok": 1.50}' in got.text
    job = got.json
    assert (job["job_id"], job["status"], job["state"], job["attempts"]) == (
        job_id, "Accepted", "completed", 1
    )  # fmt: skip
    assert job["dependencies"] == {"openai": 2} and job["actual_costs"] == {"openai": 1}
    assert job["finished_at"] and job["lease_expires_at"] is None
    assert job["config_version"] == 1 and job["error"] is None and job["source"] == "system"
    # Decided under enforce mode: no would-be decision beside the real one.
    assert job["shadow_status"] is None and job["shadow_reason"] is None
    assert job["reason_code"] is job["shadow_reason_code"] is None


def test_another_users_job_is_404_exactly_as_an_unknown_id(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    [theirs] = insert_jobs(db, user_with_config(db, {}), 1)
    other = _get(app_client, f"{HISTORY}/{theirs}", ten_token_user)
    unknown = _get(app_client, f"{HISTORY}/{uuid4()}", ten_token_user)
    assert_clear_error(other, 404)
    assert (other.status_code, other.text) == (unknown.status_code, unknown.text)
    for malformed in ("not-a-uuid", "123", f"{uuid4()}x"):
        assert_clear_error(_get(app_client, f"{HISTORY}/{malformed}", ten_token_user), 404)
    body = assert_clear_error(
        _get(app_client, f"{HISTORY}/{theirs}", ten_token_user, extra="1"), 400
    )
    assert list(body["errors"]) == ["extra"]


def test_a_rejected_job_shows_its_reason_and_retry_after(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    [job_id] = insert_jobs(db, ten_token_user, 1, status="Rejected", state=None)
    job = _get(app_client, f"{HISTORY}/{job_id}", ten_token_user).json
    assert (job["status"], job["state"], job["retry_after"]) == ("Rejected", None, 3)
    assert job["reason"] == "dependency 'openai' rate limit exceeded"
    assert job["payload"] == {"n": 1} and job["result"] is None


# --- GET /dashboard/quotas ---


def _quotas(client: falcon.testing.TestClient, user_id: UUID) -> Any:
    answer = _get(client, QUOTAS, user_id)
    assert answer.status_code == 200, answer.text
    assert list(answer.json) == ["mode", "quotas", "tenant_quotas"]
    return answer


def test_quotas_show_each_bucket_as_the_view_does(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(
        db,
        {
            "openai": {"capacity": 100, "refill_per_second": 0.5},
            "search": {"capacity": 10, "refill_per_second": 0},
            "stripe": {"capacity": 4, "refill_per_second": 1},
        },
    )
    # openai: 40 short of full as of now, so full in 80 s; search: empty and never refills.
    db.execute(
        "UPDATE token_buckets SET tokens = CASE dependency WHEN 'openai' THEN 60 ELSE 0 END,"
        " refilled_at = now() WHERE user_id = %s AND dependency IN ('openai', 'search')",
        [user_id],
    )
    answer = _quotas(app_client, user_id)
    openai, search, stripe = answer.json["quotas"]
    assert all(list(quota) == QUOTA_KEYS for quota in answer.json["quotas"])
    assert (openai["dependency"], openai["capacity"], openai["refill_per_second"]) == (
        "openai", 100, 0.5
    )  # fmt: skip
    assert openai["effective_refill_per_second"] == 0.5 and openai["adaptive"] is False
    assert 60 <= openai["tokens"] < 62
    assert 76 < openai["full_in_seconds"] <= 80
    assert (search["tokens"], search["full_in_seconds"]) == (0, None)
    assert (stripe["tokens"], stripe["full_in_seconds"]) == (4, 0)
    # The same numbers as the view, to its precision: 6 decimals cut, never more than it holds.
    [(view_tokens,)] = db.execute(
        "SELECT tokens_now FROM token_buckets_now WHERE user_id = %s AND dependency = 'openai'",
        [user_id],
    )
    assert Decimal(str(openai["tokens"])) <= view_tokens < Decimal(str(openai["tokens"])) + 1


def test_quota_numbers_are_exact_decimals_in_the_json(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": {"capacity": 3, "refill_per_second": 0}})
    db.execute("UPDATE token_buckets SET tokens = 1.1234567890123 WHERE user_id = %s", [user_id])
    text = _quotas(app_client, user_id).text
    assert '"tokens": 1.123456,' in text
    assert '"refill_per_second": 0,' in text and '"full_in_seconds": null' in text


def test_an_adaptive_buckets_effective_refill_and_full_in_seconds(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    adaptive = {"decrease": 0.5, "floor": 0.25, "recovery_per_minute": 0.05}
    user_id = user_with_config(
        db, {"openai": {"capacity": 100, "refill_per_second": 60, "adaptive": adaptive}}
    )
    # Cut to the floor, recovery off, 30 tokens short: full in 2 s at 15 tokens/s.
    db.execute(
        "UPDATE token_buckets SET effective_refill_per_second = 15,"
        " adaptive_recovery_per_second = 0, tokens = 70, refilled_at = now()"
        " WHERE user_id = %s",
        [user_id],
    )
    [openai] = _quotas(app_client, user_id).json["quotas"]
    assert (openai["refill_per_second"], openai["effective_refill_per_second"]) == (60, 15)
    assert openai["adaptive"] is True
    assert 0 < openai["full_in_seconds"] <= 2


def test_quotas_of_a_user_without_a_config_are_empty_and_bad_params_are_400(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    assert _quotas(app_client, user_id).json == {"mode": None, "quotas": [], "tenant_quotas": []}
    body = assert_clear_error(_get(app_client, QUOTAS, user_id, limit="1"), 400)
    assert list(body["errors"]) == ["limit"]


def _tenants(answer: Any) -> list[tuple[str, str]]:
    return [(quota["dependency"], quota["tenant_id"]) for quota in answer.json["tenant_quotas"]]


def test_quotas_show_the_mode_and_the_tenant_buckets_closest_to_their_limit_first(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(
        db,
        {
            "openai": {"capacity": 100, "refill_per_second": 0},
            "stripe": {"capacity": 10, "refill_per_second": 1},
        },
        tenant_share=0.5,
        tenant_overrides={"small": 0.25},
    )
    # Real decisions write the rows: a/openai 20 of 50 left, b/openai 40 of 50, small/openai
    # 5 of 25, a/stripe 4 of 5 (refilling at 0.5/s). Tenant c takes nothing: it has no row.
    for tenant, dependencies in [
        ("a", {"openai": 30}),
        ("b", {"openai": 10}),
        ("small", {"openai": 20}),
        ("a", {"stripe": 1}),
        ("c", {}),
    ]:
        answer = post_json(app_client, HISTORY, user_id, single(5, dependencies, tenant_id=tenant))
        assert answer.status_code == 202, answer.text
    refused = post_json(app_client, HISTORY, user_id, single(5, {"openai": 6}, tenant_id="small"))
    assert refused.status_code == 429
    assert refused.json["reason"] == "tenant 'small' exceeded its share of dependency 'openai'"

    answer = _quotas(app_client, user_id)
    assert answer.json["mode"] == "enforce"
    # The dependency buckets are as before: every job taken from them.
    assert [(q["dependency"], q["tokens"]) for q in answer.json["quotas"][:1]] == [("openai", 40)]
    tenants = answer.json["tenant_quotas"]
    assert all(list(quota) == TENANT_QUOTA_KEYS for quota in tenants)
    # Closest to the limit first: 5/25, 20/50, 40/50, then a/stripe at 4/5 or more.
    assert _tenants(answer) == [
        ("openai", "small"), ("openai", "a"), ("openai", "b"), ("stripe", "a")
    ]  # fmt: skip
    assert tenants[:3] == [
        {"dependency": "openai", "tenant_id": "small", "share": 0.25, "capacity": 25,
         "refill_per_second": 0, "tokens": 5, "full_in_seconds": None},
        {"dependency": "openai", "tenant_id": "a", "share": 0.5, "capacity": 50,
         "refill_per_second": 0, "tokens": 20, "full_in_seconds": None},
        {"dependency": "openai", "tenant_id": "b", "share": 0.5, "capacity": 50,
         "refill_per_second": 0, "tokens": 40, "full_in_seconds": None},
    ]  # fmt: skip
    stripe = tenants[3]
    assert (stripe["share"], stripe["capacity"], stripe["refill_per_second"]) == (0.5, 5, 0.5)
    assert 4 <= stripe["tokens"] <= 5 and 0 <= stripe["full_in_seconds"] <= 2
    # The same numbers as the view the operators read.
    view: dict[str, Decimal] = dict(
        db.execute(
            "SELECT tenant_id, tokens_now FROM tenant_buckets_now"
            " WHERE user_id = %s AND dependency = 'openai'",
            [user_id],
        ).fetchall()
    )
    assert view == {"a": 20, "b": 40, "small": 5}


def test_quotas_show_shadow_mode(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    activate_config(db, user_id, {"openai": {"capacity": 1, "refill_per_second": 0}})
    assert _quotas(app_client, user_id).json["mode"] == "enforce"
    activate_config(db, user_id, {"openai": {"capacity": 1, "refill_per_second": 0}}, mode="shadow")
    answer = _quotas(app_client, user_id).json
    assert answer["mode"] == "shadow" and answer["tenant_quotas"] == []
    assert [quota["dependency"] for quota in answer["quotas"]] == ["openai"]


def test_tenant_quotas_are_one_users_at_most_100_cut_like_the_buckets(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    dependencies = {
        "openai": {"capacity": 400, "refill_per_second": 0},
        "stripe": {"capacity": 4, "refill_per_second": 6},
    }
    user_id = user_with_config(db, dependencies, tenant_share=0.5)
    other = user_with_config(db, dependencies, tenant_share=0.5)
    insert = (
        "INSERT INTO tenant_buckets (user_id, dependency, tenant_id, capacity,"
        " refill_per_second, tokens, refilled_at)"
        " SELECT %s, %s, %s || lpad(n::text, 3, '0'), %s, %s, %s + n, %s"
        "   FROM generate_series(0, %s) AS n"
    )
    now = datetime.now(UTC)
    # openai: t000..t099 hold 100..199 of 200; a000 is empty, c000 nearly so.
    db.execute(insert, [user_id, "openai", "t", 200, 0, 100, now, 99])
    db.execute(insert, [user_id, "openai", "a", 200, 0, 0, now, 0])
    db.execute(insert, [user_id, "openai", "c", 200, 0, Decimal("0.12345678"), now, 0])
    # stripe: b000 and a000 empty, with refilled_at ahead of the clock, so their refill has not
    # started yet (the view counts none before refilled_at) and their numbers hold still.
    ahead = now + timedelta(hours=1)
    db.execute(insert, [user_id, "stripe", "b", 2, 3, 0, ahead, 0])
    db.execute(insert, [user_id, "stripe", "a", 2, 3, 0, ahead, 0])
    # Another user's emptier buckets are not this user's.
    db.execute(insert, [other, "openai", "x", 200, 0, 0, now, 5])

    answer = _quotas(app_client, user_id)
    listed = _tenants(answer)
    assert len(listed) == 100
    # Equally empty: by dependency, then tenant; then the fullest ones are left out.
    assert listed[:5] == [
        ("openai", "a000"), ("stripe", "a000"), ("stripe", "b000"), ("openai", "c000"),
        ("openai", "t000"),
    ]  # fmt: skip
    assert listed[-1] == ("openai", "t095") and ("openai", "t096") not in listed
    assert all(tenant_id[0] != "x" for _, tenant_id in listed)
    # Tokens cut (not rounded) to 6 places; 2 tokens short at 3/s is 0.666... s, rounded up to
    # the millisecond.
    assert '"tokens": 0.123456,' in answer.text
    stripe = answer.json["tenant_quotas"][1]
    assert (stripe["tokens"], stripe["full_in_seconds"]) == (0, 0.667)
    assert (stripe["share"], stripe["capacity"], stripe["refill_per_second"]) == (0.5, 2, 3)


def test_tenant_quotas_read_one_users_rows_by_the_primary_key(db: psycopg.Connection) -> None:
    """Among 40,000 tenant buckets of 20 users, one user's 2,000 are found by the key
    (user_id, dependency, tenant_id), not by reading the table whole."""
    users = [
        user_with_config(db, {"openai": {"capacity": 100, "refill_per_second": 1}})
        for _ in range(20)
    ]
    db.execute(
        "INSERT INTO tenant_buckets (user_id, dependency, tenant_id, capacity,"
        " refill_per_second, tokens, refilled_at)"
        " SELECT u, 'openai', 'tenant-' || n, 50, 0.5, n %% 50, now()"
        "   FROM unnest(%s::uuid[]) AS u CROSS JOIN generate_series(1, 2000) AS n",
        [users],
    )
    db.execute("ANALYZE tenant_buckets")
    nodes = plan_nodes(
        db, queries.TENANT_QUOTAS, {"user_id": users[7], "limit": TENANT_QUOTAS_SHOWN}
    )
    reads = [node for node in nodes if node.get("Relation Name") == "tenant_buckets"]
    assert [node["Node Type"] for node in reads] in (["Index Scan"], ["Bitmap Heap Scan"])
    conditions = [
        node.get("Index Cond", "")
        for node in nodes
        if node.get("Index Name") == "tenant_buckets_pkey"
    ]
    assert conditions and all("user_id" in condition for condition in conditions), conditions


# --- through gunicorn ---


def test_the_three_routes_over_real_http(
    start_gunicorn: StartGunicorn, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 1}})
    stranger = user_with_config(db, {})
    server = start_gunicorn(workers=2)
    session = requests.Session()
    session.headers["X-User-ID"] = str(user_id)
    ids = []
    for _ in range(3):
        answer = session.post(f"{server.url}{HISTORY}", json=queued_job({"openai": 1}))
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["job_id"])

    first = session.get(f"{server.url}{HISTORY}", params={"limit": 2})
    assert first.status_code == 200, first.text
    assert [job["job_id"] for job in first.json()["jobs"]] == ids[:0:-1]
    rest = session.get(
        f"{server.url}{HISTORY}", params={"limit": 2, "cursor": first.json()["next"]}
    )
    assert [job["job_id"] for job in rest.json()["jobs"]] == ids[:1] and rest.json()["next"] is None
    assert session.get(f"{server.url}{HISTORY}", params={"limit": 0}).status_code == 400

    one = session.get(f"{server.url}{HISTORY}/{ids[0]}")
    assert one.status_code == 200 and one.json()["payload"] == {}
    theirs = requests.get(f"{server.url}{HISTORY}/{ids[0]}", headers=headers_for(stranger))
    assert theirs.status_code == 404

    quotas = session.get(f"{server.url}{QUOTAS}")
    assert quotas.status_code == 200, quotas.text
    [openai] = quotas.json()["quotas"]
    assert openai["dependency"] == "openai" and 7 <= openai["tokens"] <= 10
    assert quotas.json()["mode"] == "enforce" and quotas.json()["tenant_quotas"] == []
