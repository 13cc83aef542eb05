"""The dashboard's config routes: GET/PUT /dashboard/config, its versions, and rollback."""

from __future__ import annotations

import re
from typing import Any

import falcon

from janus.configs import (
    ANY_VERSION,
    MAX_VERSION,
    ConfigStore,
    ConfigVersion,
    UnknownVersion,
    VersionMismatch,
)
from janus.resources.errors import InvalidBody
from janus.resources.requests import authenticated_user, load_body
from janus.schemas import ConfigSchema

NO_CONFIG = "this user has no active config; PUT /dashboard/config to set one"
DEFAULT_PAGE = 20
MAX_PAGE = 100

# An entity tag as sent back: "7", or 7 without the quotes; "*" is any active version.
_IF_MATCH = re.compile(r'"([1-9][0-9]{0,9})"|([1-9][0-9]{0,9})', re.ASCII)


def etag(version: int) -> str:
    """The ETag of a config version: its number, quoted."""
    return f'"{version}"'


def _answer(resp: falcon.Response, stored: ConfigVersion) -> None:
    """The config as `janus config show` prints it, with activated_at, and its ETag."""
    resp.media = {
        "version": stored.version,
        "activated_at": None if stored.activated_at is None else stored.activated_at.isoformat(),
        **stored.config,
    }
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
        self._schema = ConfigSchema()

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
        config = load_body(req, self._schema)
        try:
            stored = self._store.replace(user_id, config, if_match)
        except VersionMismatch as error:
            raise _mismatch(error) from None
        _answer(resp, stored)


def _page_param(req: falcon.Request, name: str, default: int | None, top: int) -> int | None:
    raw = req.get_param(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,10}", raw, re.ASCII) or not 1 <= int(raw) <= top:
        raise InvalidBody(f"{name} must be an integer from 1 to {top}", {name: ["invalid"]})
    return int(raw)


class ConfigVersionsResource:
    """GET /dashboard/config/versions: every version newest first, a page at a time."""

    def __init__(self, store: ConfigStore) -> None:
        self._store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of `limit` versions below `cursor`, and the `next` cursor (null at the end)."""
        user_id = authenticated_user(req)
        unknown = set(req.params) - {"limit", "cursor"}
        if unknown:
            raise InvalidBody(
                "unknown query parameters", {name: ["Unknown field."] for name in sorted(unknown)}
            )
        limit = _page_param(req, "limit", DEFAULT_PAGE, MAX_PAGE)
        before = _page_param(req, "cursor", None, MAX_VERSION)
        assert limit is not None
        # One more than asked: whether there is a next page, without a second query.
        page = self._store.versions(user_id, limit + 1, before)
        more = len(page) > limit
        page = page[:limit]
        resp.media = {
            "versions": [_item(one) for one in page],
            "next": str(page[-1].version) if more else None,
        }


def _item(stored: ConfigVersion) -> dict[str, Any]:
    return {
        "version": stored.version,
        "activated_at": None if stored.activated_at is None else stored.activated_at.isoformat(),
        "created_at": stored.created_at.isoformat(),
        "is_active": stored.is_active,
        "config": stored.config,
    }


class ConfigActivateResource:
    """POST /dashboard/config/versions/{version}/activate: roll back to an earlier version."""

    def __init__(self, store: ConfigStore) -> None:
        self._store = store

    def on_post(self, req: falcon.Request, resp: falcon.Response, version: int) -> None:
        """Activate a copy of `version` as the next version; 404 for an unknown version."""
        user_id = authenticated_user(req)
        try:
            stored = self._store.reactivate(user_id, version)
        except UnknownVersion:
            raise falcon.HTTPNotFound(
                description=f"this user has no config version {version}"
            ) from None
        _answer(resp, stored)
