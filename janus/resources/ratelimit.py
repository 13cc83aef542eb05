"""The RateLimit-Policy and RateLimit headers of a job answer, from the budgets of its decision.

The structured-field form of the IETF httpapi draft "RateLimit header fields for HTTP"
(draft-ietf-httpapi-ratelimit-headers, as of its revision 10): each header is an sf-list
(RFC 9651) of one item per bucket the request named, the item a String naming the
dependency, with Integer parameters:

    RateLimit-Policy: "openai";q=6;w=12, "stripe";q=4;w=4
    RateLimit: "openai";r=3;t=1, "stripe";r=3;t=1

`q` the capacity, `w` the seconds a full refill takes at the configured refill (left out when
the bucket never refills: the draft's window is optional and never 0), `r` the whole tokens
left after the decision, `t` the seconds until the next whole token at the effective refill
(0 when the bucket is full; left out when it never refills). See janus.admission.Budget.
"""

from __future__ import annotations

from collections.abc import Sequence

from janus.admission import Budget

# RFC 9651's Integer has at most 15 digits; a window or a wait longer than that (a refill of
# a billionth of a token a second) is told as the largest one.
SF_INTEGER_MAX = 999_999_999_999_999


def sf_string_allows(name: str) -> bool:
    """Whether an sf-string can hold `name`: printable ASCII only (space to tilde)."""
    return name.isascii() and name.isprintable()


def _sf_string(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sf_integer(value: int) -> str:
    return str(min(value, SF_INTEGER_MAX))


def ratelimit_headers(budgets: Sequence[Budget]) -> dict[str, str]:
    """`RateLimit-Policy` and `RateLimit` for `budgets`; none when no budget can be told.

    A dependency whose name an sf-string cannot hold (non-ASCII or a control character) is
    left out rather than renamed: a client finds each policy under the very name it sent, or
    not at all (GET /dashboard/quotas still shows it). The draft's lists are never empty, so
    a request without a bucket to tell gets neither header.
    """
    policies = []
    limits = []
    for budget in budgets:
        if not sf_string_allows(budget.dependency):
            continue
        name = _sf_string(budget.dependency)
        policy = f"{name};q={budget.quota}"
        if budget.window is not None:
            policy += f";w={_sf_integer(budget.window)}"
        limit = f"{name};r={budget.remaining}"
        if budget.reset is not None:
            limit += f";t={_sf_integer(budget.reset)}"
        policies.append(policy)
        limits.append(limit)
    if not policies:
        return {}
    return {"RateLimit-Policy": ", ".join(policies), "RateLimit": ", ".join(limits)}
