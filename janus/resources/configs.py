"""The dashboard's rules: GET/PUT /dashboard/config, its versions, rollback, pause and resume."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any
from uuid import UUID

import falcon
from marshmallow import Schema

from janus.configs import (
    ANY_VERSION,
    MAX_VERSION,
    ConfigStore,
    ConfigVersion,
    UnknownVersion,
    VersionMismatch,
    in_force,
)
from janus.resources.errors import InvalidBody
from janus.resources.requests import (
    authenticated_user,
    load_body,
    one_page,
    only_params,
    page_param,
)
from janus.schemas.answers import (
    ActiveConfigSchema,
    ConfigVersionsAnswerSchema,
    PauseHistoryAnswerSchema,
    PauseStateSchema,
)
from janus.schemas.requests import ConfigSchema

NO_CONFIG = "this user has no active config; PUT /dashboard/config to set one"
DEFAULT_PAGE = 20
MAX_PAGE = 100
# The pause history's cursor is a change id, a bigint.
MAX_CHANGE_ID = 2**63 - 1
# A page of config versions ends once the configs it holds reach this size (as JSON), its
# first version aside: `limit` versions of 1,000 dependencies each would be megabytes.
MAX_PAGE_BYTES = 1024 * 1024

CONFIG = ConfigSchema()
ACTIVE_CONFIG = ActiveConfigSchema()
VERSIONS = ConfigVersionsAnswerSchema()
PAUSE_STATE = PauseStateSchema()
PAUSE_HISTORY = PauseHistoryAnswerSchema()

# An entity tag as sent back: "7", or 7 without the quotes; "*" is any active version.
_IF_MATCH = re.compile(r'"([1-9][0-9]{0,9})"|([1-9][0-9]{0,9})', re.ASCII)


def etag(version: int) -> str:
    """The ETag of a config version: its number, quoted."""
    return f'"{version}"'


def _answer(resp: falcon.Response, stored: ConfigVersion) -> None:
    """The config in force, with its version and activated_at, and its ETag."""
    resp.media = ACTIVE_CONFIG.dump(in_force(stored))
    resp.set_header("ETag", etag(stored.version))


def _if_match(req: falcon.Request) -> int | None:
    raw = req.get_header("If-Match")
    if raw is None:
        return None
    if raw.strip() == "*":
        return ANY_VERSION
    match = _IF_MATCH.fullmatch(raw.strip())
    if match is None:
        raise InvalidBody('If-Match must be a config version\'s ETag, such as "3"')
    return int(match.group(1) or match.group(2))


def _mismatch(error: VersionMismatch) -> falcon.HTTPError:
    active = "none" if error.active_version is None else etag(error.active_version)
    return falcon.HTTPPreconditionFailed(
        description=f"If-Match is not the active config version (it is {active}); "
        "nothing was stored: GET the config again and retry"
    )


class ConfigResource:
    """GET /dashboard/config: the active config; PUT: activate a new version."""

    def __init__(self, store: ConfigStore) -> None:
        self._store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The active config with its version, activated_at and ETag; 404 when none."""
        user_id = authenticated_user(req)
        stored = self._store.active(user_id)
        if stored is None:
            raise falcon.HTTPNotFound(description=NO_CONFIG)
        _answer(resp, stored)

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Validate, store as the next version and activate; 412 on a stale If-Match."""
        user_id = authenticated_user(req)
        if_match = _if_match(req)
        config = load_body(req, CONFIG)
        try:
            stored = self._store.replace(user_id, config, if_match)
        except VersionMismatch as error:
            raise _mismatch(error) from None
        _answer(resp, stored)


def _page(req: falcon.Request, max_cursor: int) -> tuple[int, int | None]:
    """`limit` and the `cursor` (the previous page's `next`) of a keyset-paged listing."""
    only_params(req, ("limit", "cursor"))
    limit = page_param(req, "limit", DEFAULT_PAGE, MAX_PAGE)
    assert limit is not None
    return limit, page_param(req, "cursor", None, max_cursor)


class _KeysetPage:
    """A listing of the user's, newest first, a page at a time: `limit` items below `cursor`
    (the last key of the page before), and the `next` cursor (null at the end)."""

    def __init__(
        self,
        read: Callable[[UUID, int, int | None], Sequence[Any]],
        answer: Schema,
        member: str,
        key: Callable[[Any], int],
        max_cursor: int,
        size: Callable[[Any], int] | None = None,
    ) -> None:
        self._read = read
        self._answer = answer
        self._member = member
        self._key = key
        self._max_cursor = max_cursor
        # An item's size in the answer, when a page is also bounded by MAX_PAGE_BYTES.
        self._size = size

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of `limit` items below `cursor`, and the `next` cursor."""
        user_id = authenticated_user(req)
        limit, before = _page(req, self._max_cursor)
        page, more = one_page(self._read(user_id, limit + 1, before), limit)
        if self._size is not None:
            # The first item always; then only as many as fit MAX_PAGE_BYTES.
            total, fits = 0, 0
            for item in page:
                total += self._size(item)
                if fits and total > MAX_PAGE_BYTES:
                    break
                fits += 1
            more = more or fits < len(page)
            page = page[:fits]
        following = str(self._key(page[-1])) if more else None
        resp.media = self._answer.dump({self._member: page, "next": following})


class ConfigVersionsResource(_KeysetPage):
    """GET /dashboard/config/versions: every version newest first, a page at a time."""

    def __init__(self, store: ConfigStore) -> None:
        super().__init__(
            store.versions,
            VERSIONS,
            "versions",
            attrgetter("version"),
            MAX_VERSION,
            size=lambda version: len(json.dumps(version.config)),
        )


class ConfigActivateResource:
    """POST /dashboard/config/versions/{version}/activate: roll back to an earlier version."""

    def __init__(self, store: ConfigStore) -> None:
        self._store = store

    def on_post(self, req: falcon.Request, resp: falcon.Response, version: int) -> None:
        """Make `version` the active one again, as it is; 404 for an unknown version."""
        user_id = authenticated_user(req)
        try:
            stored = self._store.reactivate(user_id, version)
        except UnknownVersion:
            raise falcon.HTTPNotFound(
                description=f"this user has no config version {version}"
            ) from None
        _answer(resp, stored)


class PauseResource:
    """POST /dashboard/pause and /dashboard/resume: refuse, or admit again, the user's jobs."""

    def __init__(self, store: ConfigStore, *, paused: bool) -> None:
        self._store = store
        self._paused = paused

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Set the state (doing nothing when it already is) and answer it, with since when."""
        user_id = authenticated_user(req)
        state = self._store.set_paused(user_id, self._paused)
        resp.media = PAUSE_STATE.dump(state)


class PauseHistoryResource(_KeysetPage):
    """GET /dashboard/pause/history: when the user was paused and resumed, newest first."""

    def __init__(self, store: ConfigStore) -> None:
        super().__init__(
            store.pause_changes, PAUSE_HISTORY, "changes", attrgetter("change_id"), MAX_CHANGE_ID
        )
