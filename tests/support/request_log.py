"""The request log as a test reads it: gunicorn's output, where lines starting `{` are Janus's
request log (stdout) and the rest gunicorn's and Janus's error log (stderr, `[time] ...`)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

# Every key a line may have; the last two only when the request was decided.
ALWAYS = {"time", "request_id", "method", "route", "status", "duration_ms", "user", "key_id"}
DECIDED = {"jobs_accepted", "jobs_rejected"}
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
# A falcon route template (`/system/jobs/{job_id:uuid}/fail`): only the app's own text.
_TEMPLATE = re.compile(r"(/([a-z._]+|\{[a-z_]+(:[a-z]+(\([a-z0-9=, ]*\))?)?\}))+")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
# A user's tag (janus.keys.user_tag) and a key's id: never the user's id nor a secret.
_USER_TAG = re.compile(r"[0-9a-f]{8}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")


def request_log_lines(output: str) -> list[dict[str, Any]]:
    """Every request log line of `output`, each checked to be one well-formed JSON object.

    A line that starts with `{` and is not one (broken, or with a key or value no request log
    line has) fails the test: nothing the client wrote can be in a line that passes, but the
    well-formed request id, and the user's tag and key id once authenticated.
    """
    lines = []
    for text in output.splitlines():
        if not text.startswith("{"):
            continue
        line = json.loads(text)
        assert isinstance(line, dict), text
        assert text.isascii(), text
        assert ALWAYS <= line.keys() <= ALWAYS | DECIDED, text
        assert (line.keys() >= DECIDED) or not (DECIDED & line.keys()), text
        datetime.fromisoformat(line["time"])
        assert _REQUEST_ID.fullmatch(line["request_id"]), text
        assert line["method"] in _METHODS, text
        assert line["route"] == "unmatched" or _TEMPLATE.fullmatch(line["route"]), text
        assert isinstance(line["status"], int) and 100 <= line["status"] <= 599, text
        assert isinstance(line["duration_ms"], float | int) and line["duration_ms"] >= 0, text
        assert line["user"] is None or _USER_TAG.fullmatch(line["user"]), text
        assert line["key_id"] is None or _KEY_ID.fullmatch(line["key_id"]), text
        for key in DECIDED & line.keys():
            assert isinstance(line[key], int) and line[key] >= 0, text
        lines.append(line)
    return lines
