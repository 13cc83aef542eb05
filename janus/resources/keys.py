"""The user's API keys over HTTP (the `admin` scope): POST /dashboard/keys makes one and shows
its secret this once, GET /dashboard/keys lists them, POST /dashboard/keys/{key_id}/revoke
revokes one from its next request on."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import falcon

from janus.keys import KEY_ID_HEX, MAX_KEYS, KeyStore, TooManyKeys
from janus.resources.requests import authenticated_user, load_body, only_params
from janus.schemas.keys import ApiKeySchema, KeyRequestSchema, KeysAnswerSchema, NewKeySchema

KEY_REQUEST = KeyRequestSchema()
NEW_KEY = NewKeySchema()
KEYS = KeysAnswerSchema()
KEY = ApiKeySchema()
_KEY_ID = re.compile(f"[0-9a-f]{{{KEY_ID_HEX}}}", re.ASCII)
NO_SUCH_KEY = "no key with this id"


class KeysResource:
    """POST and GET /dashboard/keys."""

    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Make a key: 201 with the key itself, which is never shown again."""
        user_id = authenticated_user(req)
        body = load_body(req, KEY_REQUEST)
        days = body.get("expires_in_days")
        expires_at = None if days is None else datetime.now(UTC) + timedelta(days=days)
        scopes = tuple(dict.fromkeys(body["scopes"]))
        try:
            key, listed = self._keys.create(user_id, body["name"], scopes, expires_at)
        except TooManyKeys:
            raise falcon.HTTPConflict(
                description=f"the user has {MAX_KEYS} keys in force already: revoke one first"
            ) from None
        resp.status = falcon.HTTP_201
        resp.media = NEW_KEY.dump({**vars(listed), "key": key.text})

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The user's keys, newest first, revoked and expired ones included."""
        user_id = authenticated_user(req)
        only_params(req, ())
        resp.media = KEYS.dump({"keys": self._keys.list(user_id)})


class KeyRevokeResource:
    """POST /dashboard/keys/{key_id}/revoke."""

    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys

    def on_post(self, req: falcon.Request, resp: falcon.Response, key_id: str) -> None:
        """Revoke the key; 200 again for a key revoked already, 404 for no such key."""
        user_id = authenticated_user(req)
        if _KEY_ID.fullmatch(key_id) is None or self._keys.revoke(user_id, key_id) is None:
            raise falcon.HTTPNotFound(description=NO_SUCH_KEY)
        [listed] = [key for key in self._keys.list(user_id) if key.key_id == key_id]
        resp.media = KEY.dump(listed)
