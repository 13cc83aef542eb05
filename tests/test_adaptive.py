"""Adaptive refill (AIMD) on a real Postgres, with exact numeric arithmetic.

A report of upstream throttling multiplies an adaptive bucket's effective refill by its
decrease factor, never below its floor; the rate then regains a share of the configured
refill per minute, up to it, and the tokens gained are the integral of that rate.

Time is controlled by putting refilled_at in the past with SQL and, after a call, reading
back the refilled_at it wrote: that is the database clock the call used, so the elapsed
time, and every expected level, is known to the microsecond and compared exactly as Decimal.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import NamedTuple
from uuid import UUID

import psycopg
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from janus.db.buckets import report_upstream_throttled
from tests.support.factories import activate_config, create_user, stored_bucket, user_with_config
from tests.support.hostile import examples

# refill 60 tokens/s, floor 0.25 (15/s), decrease 0.5, recovery 0.05 x 60 = 3 tokens/s per
# minute: 0.05 tokens/s per second, so that every expected value below is a finite decimal.
OPENAI_ADAPTIVE = {
    "capacity": 1_000_000,
    "refill_per_second": 60,
    "adaptive": {"decrease": 0.5, "floor": 0.25, "recovery_per_minute": 0.05},
}
PLAIN = {"capacity": 100, "refill_per_second": 2}


class Bucket(NamedTuple):
    """The stored row (not brought up to now)."""

    tokens: Decimal
    effective: Decimal
    refill: Decimal
    recovery: Decimal | None
    refilled_at: datetime
    throttled_at: datetime | None


def bucket(db: psycopg.Connection, user_id: UUID, dependency: str) -> Bucket:
    """The token_buckets row of (user, dependency)."""
    row = stored_bucket(
        db,
        user_id,
        dependency,
        "tokens, effective_refill_per_second AS effective, refill_per_second AS refill,"
        " adaptive_recovery_per_second AS recovery, refilled_at, throttled_at",
    )
    return Bucket(**row)


def set_bucket(
    db: psycopg.Connection,
    user_id: UUID,
    dependency: str,
    *,
    tokens: Decimal | int,
    effective: Decimal | int | None = None,
    seconds_ago: float = 0,
) -> Bucket:
    """Put the bucket at `tokens` and `effective` as of `seconds_ago`; the row as written."""
    db.execute(
        "UPDATE token_buckets"
        "   SET tokens = %s,"
        "       effective_refill_per_second = coalesce(%s, effective_refill_per_second),"
        "       refilled_at = now() - make_interval(secs => %s)"
        " WHERE user_id = %s AND dependency = %s",
        [tokens, effective, seconds_ago, user_id, dependency],
    )
    return bucket(db, user_id, dependency)


def seconds(later: datetime, earlier: datetime) -> Decimal:
    """later - earlier in seconds, exactly (timestamps have microseconds)."""
    delta = later - earlier
    return Decimal(delta.days * 86_400 + delta.seconds) + Decimal(delta.microseconds) / 1_000_000


def gained(refill: Decimal, effective: Decimal, recovery: Decimal | None, t: Decimal) -> Decimal:
    """Tokens gained over t seconds: the integral of min(refill, effective + recovery * s)."""
    with localcontext() as context:
        context.prec = 200
        if recovery is None or recovery == 0 or effective >= refill:
            return effective * t
        if recovery * t <= refill - effective:
            return effective * t + recovery * t * t / 2
        return refill * t - (refill - effective) ** 2 / (2 * recovery)


def rate_after(
    refill: Decimal, effective: Decimal, recovery: Decimal | None, t: Decimal
) -> Decimal:
    """The effective refill t seconds later: min(refill, effective + recovery * t)."""
    if recovery is None:
        return effective
    with localcontext() as context:
        context.prec = 200
        return min(refill, effective + recovery * t)


def report(db: psycopg.Connection, user_id: UUID, *names: str) -> dict[str, Decimal]:
    """report_upstream_throttled() through janus.db, committed at once (db is autocommit)."""
    return report_upstream_throttled(db, user_id, list(names))


def admit(db: psycopg.Connection, user_id: UUID, priority: int, costs: dict[str, int]) -> tuple:
    """One job through admit_jobs(): (status, reason, retry_after)."""
    row = db.execute(
        "SELECT status, reason, retry_after FROM admit_jobs(%s, 'system', 'b', ARRAY['t'],"
        " ARRAY[%s]::smallint[], ARRAY[%s]::jsonb[], ARRAY['{}']::json[], false)",
        [user_id, priority, json.dumps(costs)],
    ).fetchone()
    assert row is not None
    return tuple(row)


@pytest.fixture
def adaptive_user(db: psycopg.Connection) -> UUID:
    """A user with an adaptive openai bucket (OPENAI_ADAPTIVE) and a plain stripe one."""
    return user_with_config(db, {"openai": OPENAI_ADAPTIVE, "stripe": PLAIN})


# --- the rate and its integral, as functions of exact elapsed times ---


@pytest.mark.parametrize(
    ("elapsed", "tokens", "rate"),
    [
        ("0", "0", "30"),
        ("0.000001", "0.000030000000025", "30.00000005"),
        # Still rising: 30 t + 0.05 t^2 / 2.
        ("100", "3250", "35"),
        # Reaches 60 at exactly 600 s: 18,000 + 9,000.
        ("600", "27000", "60"),
        # Then 60 t minus the triangle it missed, 30^2 / (2 x 0.05) = 9,000.
        ("1000", "51000", "60"),
    ],
)
def test_the_rate_recovers_linearly_and_its_tokens_are_its_exact_integral(
    db: psycopg.Connection, elapsed: str, tokens: str, rate: str
) -> None:
    row = db.execute(
        "SELECT refill_tokens(60, 30, 0.05, %(t)s::numeric),"
        "       refill_rate(60, 30, 0.05, %(t)s::numeric)",
        {"t": elapsed},
    ).fetchone()
    assert row == (Decimal(tokens), Decimal(rate))


def test_refilling_in_two_steps_gains_what_one_step_gains(db: psycopg.Connection) -> None:
    """0 -> 400 s then 400 -> 1000 s is 0 -> 1000 s: lazy refills compose exactly."""
    row = db.execute(
        "SELECT refill_tokens(60, 30, 0.05, 400), refill_rate(60, 30, 0.05, 400)"
    ).fetchone()
    assert row == (Decimal(16000), Decimal(50))
    row = db.execute("SELECT refill_tokens(60, 50, 0.05, 600)").fetchone()
    assert row == (Decimal(35000),)
    assert Decimal(16000) + Decimal(35000) == Decimal(51000)  # the one-step value above


def test_a_bucket_that_is_not_adaptive_gains_refill_times_elapsed(db: psycopg.Connection) -> None:
    row = db.execute(
        "SELECT refill_tokens(2.5, 2.5, NULL, 7.000003), refill_rate(2.5, 2.5, NULL, 7.000003)"
    ).fetchone()
    assert row == (Decimal("17.5000075"), Decimal("2.5"))


# --- configuration ---


def test_activation_stores_the_shares_and_starts_the_bucket_at_its_configured_refill(
    db: psycopg.Connection, adaptive_user: UUID
) -> None:
    stored = db.execute(
        "SELECT dependency, adaptive_decrease, adaptive_floor, adaptive_recovery_per_minute"
        "  FROM config_dependencies WHERE user_id = %s ORDER BY dependency",
        [adaptive_user],
    ).fetchall()
    assert stored == [
        ("openai", Decimal("0.5"), Decimal("0.25"), Decimal("0.05")),
        ("stripe", None, None, None),
    ]
    rows = db.execute(
        "SELECT dependency, effective_refill_per_second, adaptive_decrease,"
        "       adaptive_floor_per_second, adaptive_recovery_per_second, throttled_at"
        "  FROM token_buckets WHERE user_id = %s ORDER BY dependency",
        [adaptive_user],
    ).fetchall()
    assert rows == [
        ("openai", 60, Decimal("0.5"), 15, Decimal("0.05"), None),
        ("stripe", 2, None, None, None, None),
    ]


def test_the_tables_refuse_an_adaptive_setting_out_of_range(
    db: psycopg.Connection, adaptive_user: UUID
) -> None:
    """The schema refuses them first (test_cli); the tables hold the rule for any other writer."""
    for bad in (
        {"decrease": 1, "floor": 0.5, "recovery_per_minute": 1},
        {"decrease": 0.5, "floor": 0, "recovery_per_minute": 1},
        {"decrease": 0.5, "floor": 0.5, "recovery_per_minute": 0},
        {"decrease": 0.5, "floor": 0.5},
    ):
        with pytest.raises(psycopg.errors.CheckViolation):
            activate_config(
                db,
                adaptive_user,
                {"openai": {"capacity": 1, "refill_per_second": 1, "adaptive": bad}},
            )
    # And a non-adaptive bucket's effective refill is its configured one.
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "UPDATE token_buckets SET effective_refill_per_second = 1"
            " WHERE user_id = %s AND dependency = 'stripe'",
            [adaptive_user],
        )


def test_a_new_config_resets_the_effective_refill_after_refilling_at_the_old_one(
    db: psycopg.Connection, adaptive_user: UUID
) -> None:
    before = set_bucket(db, adaptive_user, "openai", tokens=0, effective=20, seconds_ago=10)
    report(db, adaptive_user, "openai")
    cut = bucket(db, adaptive_user, "openai")
    assert cut.effective == 15  # (20 + 0.05 x ~10) x 0.5 is under the floor of 15

    changed = {**OPENAI_ADAPTIVE, "refill_per_second": 120}
    activate_config(db, adaptive_user, {"openai": changed, "stripe": PLAIN})
    after = bucket(db, adaptive_user, "openai")
    elapsed = seconds(after.refilled_at, cut.refilled_at)
    assert after.tokens == cut.tokens + gained(Decimal(60), Decimal(15), Decimal("0.05"), elapsed)
    assert (after.effective, after.refill, after.recovery) == (
        Decimal(120),
        Decimal(120),
        Decimal("0.1"),
    )
    assert after.throttled_at is None
    assert before.refilled_at < cut.refilled_at <= after.refilled_at

    # Turning adaptive off makes it a plain bucket again.
    activate_config(db, adaptive_user, {"openai": {"capacity": 10, "refill_per_second": 3}})
    plain = bucket(db, adaptive_user, "openai")
    assert (plain.effective, plain.refill, plain.recovery) == (Decimal(3), Decimal(3), None)


# --- reports: multiplicative decrease, floor, recovery, clamping ---


def test_a_report_first_refills_to_now_then_halves_the_rate(
    db: psycopg.Connection, adaptive_user: UUID
) -> None:
    before = set_bucket(db, adaptive_user, "openai", tokens=5, seconds_ago=2)
    assert report(db, adaptive_user, "openai") == {"openai": Decimal(30)}
    after = bucket(db, adaptive_user, "openai")
    elapsed = seconds(after.refilled_at, before.refilled_at)
    assert elapsed >= 2
    assert after.tokens == 5 + 60 * elapsed  # at the full rate until the report
    assert after.effective == 30
    assert after.throttled_at == after.refilled_at


def test_the_rate_recovers_linearly_between_reports_and_the_tokens_follow_it(
    db: psycopg.Connection, adaptive_user: UUID
) -> None:
    """30 tokens/s, 100 s ago: the rate is back to 35, then halved to 17.5."""
    before = set_bucket(db, adaptive_user, "openai", tokens=0, effective=30, seconds_ago=100)
    report(db, adaptive_user, "openai")
    after = bucket(db, adaptive_user, "openai")
    elapsed = seconds(after.refilled_at, before.refilled_at)
    recovered = rate_after(Decimal(60), Decimal(30), Decimal("0.05"), elapsed)
    assert after.tokens == gained(Decimal(60), Decimal(30), Decimal("0.05"), elapsed)
    assert after.effective == recovered * Decimal("0.5")
    assert 35 <= recovered < Decimal("35.01")


def test_recovery_stops_at_the_configured_refill(
    db: psycopg.Connection, adaptive_user: UUID
) -> None:
    """From the floor (15/s) an hour ago: back to 60 after 900 s, so the cut starts from 60."""
    before = set_bucket(db, adaptive_user, "openai", tokens=0, effective=15, seconds_ago=3600)
    assert report(db, adaptive_user, "openai") == {"openai": Decimal(30)}
    after = bucket(db, adaptive_user, "openai")
    elapsed = seconds(after.refilled_at, before.refilled_at)
    # 60 t minus the triangle it missed: 45^2 / (2 x 0.05) = 20,250 tokens.
    assert after.tokens == 60 * elapsed - 20_250


def test_tokens_stop_at_capacity(db: psycopg.Connection) -> None:
    user_id = user_with_config(db, {"openai": {**OPENAI_ADAPTIVE, "capacity": 500}})
    set_bucket(db, user_id, "openai", tokens=499, effective=15, seconds_ago=60)
    report(db, user_id, "openai")
    assert bucket(db, user_id, "openai").tokens == 500


def test_the_floor_stops_the_decrease(db: psycopg.Connection, adaptive_user: UUID) -> None:
    """60 -> 30 -> 15 (floor 0.25 x 60) -> 15, with the recovery switched off to compare exactly."""
    db.execute(
        "UPDATE token_buckets SET adaptive_recovery_per_second = 0"
        " WHERE user_id = %s AND dependency = 'openai'",
        [adaptive_user],
    )
    rates = [report(db, adaptive_user, "openai")["openai"] for _ in range(3)]
    assert rates == [30, 15, 15]


def test_a_report_takes_no_token_and_never_goes_below_zero(
    db: psycopg.Connection, adaptive_user: UUID
) -> None:
    """An empty bucket whose refilled_at is ahead of the clock (a clock stepped back) stays
    empty and keeps its refilled_at; only its rate is cut."""
    db.execute(
        "UPDATE token_buckets SET tokens = 0, refilled_at = clock_timestamp() + interval '1 hour'"
        " WHERE user_id = %s AND dependency = 'openai'",
        [adaptive_user],
    )
    before = bucket(db, adaptive_user, "openai")
    report(db, adaptive_user, "openai")
    after = bucket(db, adaptive_user, "openai")
    assert (after.tokens, after.effective, after.refilled_at) == (
        Decimal(0),
        Decimal(30),
        before.refilled_at,
    )


def test_reports_leave_plain_buckets_and_unknown_names_alone(
    db: psycopg.Connection, adaptive_user: UUID
) -> None:
    set_bucket(db, adaptive_user, "stripe", tokens=7, seconds_ago=5)
    rows_before = db.execute("SELECT * FROM token_buckets WHERE dependency = 'stripe'").fetchall()

    assert report(db, adaptive_user, "stripe", "github") == {}
    assert report(db, create_user(db), "openai") == {}  # a user without buckets
    assert report(db, UUID(int=0), "openai") == {}  # no such user
    assert report(db, adaptive_user) == {}

    assert db.execute("SELECT * FROM token_buckets WHERE dependency = 'stripe'").fetchall() == (
        rows_before
    )
    assert bucket(db, adaptive_user, "openai").effective == 60


def test_a_name_listed_twice_is_one_report(db: psycopg.Connection, adaptive_user: UUID) -> None:
    assert report(db, adaptive_user, "openai", "stripe", "openai") == {"openai": Decimal(30)}


def test_a_report_is_part_of_its_callers_transaction(
    database_url: str, adaptive_user: UUID
) -> None:
    """The queue reports in the transaction that completes or fails a job: rollback undoes it."""
    with psycopg.connect(database_url) as conn:
        assert report_upstream_throttled(conn, adaptive_user, ["openai"]) == {"openai": 30}
        conn.rollback()
        effective = "effective_refill_per_second"
        assert stored_bucket(conn, adaptive_user, "openai", effective) == {effective: 60}


def test_concurrent_reports_on_one_bucket_are_all_applied(
    database_url: str, db: psycopg.Connection
) -> None:
    """12 workers report at once: 4,096 x 0.5^12 = 1 exactly, no update lost.

    Each worker, as a job's completion will, admits and reports in one transaction, naming
    the buckets in the reverse of their lock order: the report locks them in name order, so
    no worker deadlocks with another. The recovery is switched off so that the rate moves
    only by the decreases.
    """
    adaptive = {
        "capacity": 10**9,
        "refill_per_second": 4096,
        "adaptive": {"decrease": 0.5, "floor": 0.0001, "recovery_per_minute": 1},
    }
    user_id = user_with_config(db, {"openai": adaptive, "search": adaptive})
    db.execute(
        "UPDATE token_buckets SET adaptive_recovery_per_second = 0 WHERE user_id = %s", [user_id]
    )
    workers = 12
    start = threading.Barrier(workers)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            with psycopg.connect(database_url) as conn:
                start.wait(timeout=30)
                admit(conn, user_id, 10, {"openai": 1, "search": 1})
                report_upstream_throttled(conn, user_id, ["search", "openai"])
                conn.commit()
        except BaseException as error:  # reported below, in the test's thread
            failures.append(error)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert bucket(db, user_id, "openai").effective == 1
    assert bucket(db, user_id, "search").effective == 1
    accepted = db.execute(
        "SELECT count(*) FROM jobs WHERE user_id = %s AND status = 'Accepted'", [user_id]
    ).fetchone()
    assert accepted == (workers,)


# --- admission at the effective rate ---


def test_a_bucket_at_half_rate_refills_half_as_fast(db: psycopg.Connection) -> None:
    """Two buckets of 60 tokens/s, one cut to 30, both empty 10 s ago, admitted in one job."""
    user_id = user_with_config(
        db, {"openai": OPENAI_ADAPTIVE, "search": {"capacity": 1_000_000, "refill_per_second": 60}}
    )
    # One statement, so both were last refilled at the same instant.
    db.execute(
        "UPDATE token_buckets SET tokens = 0, refilled_at = now() - interval '10 seconds',"
        "       effective_refill_per_second = CASE dependency WHEN 'openai' THEN 30 ELSE 60 END"
        " WHERE user_id = %s",
        [user_id],
    )
    before = bucket(db, user_id, "openai")
    assert admit(db, user_id, 10, {"openai": 1, "search": 1}) == ("Accepted", "", None)

    after = bucket(db, user_id, "openai")
    plain = bucket(db, user_id, "search")
    elapsed = seconds(after.refilled_at, before.refilled_at)
    assert plain.refilled_at == after.refilled_at
    assert plain.tokens == 60 * elapsed - 1
    assert after.tokens == gained(Decimal(60), Decimal(30), Decimal("0.05"), elapsed) - 1
    assert after.effective == rate_after(Decimal(60), Decimal(30), Decimal("0.05"), elapsed)
    # Half as many, plus what the rising rate added: 0.05 x t^2 / 2, 2.5 tokens for 10 s.
    assert after.tokens + 1 == (plain.tokens + 1) / 2 + Decimal("0.025") * elapsed * elapsed


def test_retry_after_is_computed_at_the_effective_rate(db: psycopg.Connection) -> None:
    """Short of 50 tokens: 1 s at the configured 60/s, 4 s at a cut rate of 15/s."""
    user_id = user_with_config(db, {"openai": OPENAI_ADAPTIVE})
    set_bucket(db, user_id, "openai", tokens=0, seconds_ago=0)
    assert admit(db, user_id, 10, {"openai": 50}) == (
        "Rejected",
        "dependency 'openai' rate limit exceeded",
        1,
    )
    set_bucket(db, user_id, "openai", tokens=0, effective=15, seconds_ago=0)
    assert admit(db, user_id, 10, {"openai": 50}) == (
        "Rejected",
        "dependency 'openai' rate limit exceeded",
        4,
    )


def test_the_operators_view_shows_the_effective_refill_beside_the_configured_one(
    db: psycopg.Connection, adaptive_user: UUID
) -> None:
    set_bucket(db, adaptive_user, "openai", tokens=0, effective=15, seconds_ago=100)
    rows = db.execute(
        "SELECT dependency, refill_per_second, effective_refill_per_second, adaptive"
        "  FROM token_buckets_now WHERE user_id = %s ORDER BY dependency",
        [adaptive_user],
    ).fetchall()
    (openai, refill, effective, adaptive), stripe = rows
    assert (openai, refill, adaptive) == ("openai", 60, True)
    assert 20 <= effective < 21  # 15 + 0.05 x 100 s and a little
    assert stripe == ("stripe", 2, 2, False)


# --- any sequence of waits, reports and admissions, against an exact model ---

# recovery 0.5 x 60 / 60 = 0.5 tokens/s per second: 2a = 1, so even the integral's division is
# exact and the model below can be compared with the database digit for digit.
MODEL_REFILL = Decimal(60)
MODEL_RECOVERY = Decimal("0.5")
MODEL_CAPACITY = 1000

steps = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.integers(0, 300_000_000)),  # microseconds
        st.tuples(st.just("report"), st.just(0)),
        st.tuples(st.just("admit"), st.integers(1, 400)),  # tokens
    ),
    min_size=1,
    max_size=12,
)


def _model_refill(row: Bucket, elapsed: Decimal) -> tuple[Decimal, Decimal]:
    """(tokens, effective) of `row` brought `elapsed` seconds forward, as the SQL must."""
    tokens = min(
        Decimal(MODEL_CAPACITY),
        row.tokens + gained(MODEL_REFILL, row.effective, MODEL_RECOVERY, elapsed),
    )
    return tokens, rate_after(MODEL_REFILL, row.effective, MODEL_RECOVERY, elapsed)


@examples(40)
@given(
    decrease=st.sampled_from(["0.5", "0.75", "0.9", "0.123"]),
    floor=st.sampled_from(["0.1", "0.25", "1"]),
    actions=steps,
)
def test_any_sequence_of_reports_and_admissions_matches_the_exact_model(
    db: psycopg.Connection, decrease: str, floor: str, actions: list[tuple[str, int]]
) -> None:
    adaptive = {"decrease": float(decrease), "floor": float(floor), "recovery_per_minute": 0.5}
    user_id = user_with_config(
        db,
        {"openai": {"capacity": MODEL_CAPACITY, "refill_per_second": 60, "adaptive": adaptive}},
    )
    floor_rate = Decimal(floor) * MODEL_REFILL
    row = set_bucket(db, user_id, "openai", tokens=0, effective=floor_rate)
    for action, amount in actions:
        if action == "wait":
            # Moving refilled_at back is the same as that much time passing.
            db.execute(
                "UPDATE token_buckets SET refilled_at = refilled_at - %s::interval"
                " WHERE user_id = %s",
                [f"{amount} microseconds", user_id],
            )
            moved = bucket(db, user_id, "openai")
            assert seconds(row.refilled_at, moved.refilled_at) == Decimal(amount) / 1_000_000
            row = moved
            continue
        if action == "report":
            report(db, user_id, "openai")
            after = bucket(db, user_id, "openai")
            tokens, rate = _model_refill(row, seconds(after.refilled_at, row.refilled_at))
            cut = (rate * Decimal(decrease)).quantize(Decimal("1e-24"), rounding=ROUND_HALF_UP)
            assert (after.tokens, after.effective) == (tokens, max(floor_rate, min(rate, cut)))
        else:
            status, _, retry_after = admit(db, user_id, 10, {"openai": amount})
            event(f"admission {status}")
            after = bucket(db, user_id, "openai")
            if status == "Accepted":
                tokens, rate = _model_refill(row, seconds(after.refilled_at, row.refilled_at))
                assert tokens >= amount
                assert (after.tokens, after.effective) == (tokens - amount, rate)
            else:
                assert after == row  # a rejection writes nothing
                assert retry_after is None if amount > MODEL_CAPACITY else retry_after >= 1
        assert 0 <= after.tokens <= MODEL_CAPACITY
        assert floor_rate <= after.effective <= MODEL_REFILL
        row = after
