"""Group admission: a user's requests that queue for a connection are decided together.

Most of a single job's cost in Postgres is paid per statement and per commit, not per job,
and a busy user's requests wait for each other anyway, on the row lock of the bucket they
share. So within a gunicorn worker, a single job or a partial batch that finds one of the
worker's admission connections free, and no decision of its user under way, is decided at
once, alone (an idle service adds no wait); any other joins the next group of its user,
which is decided as soon as a connection is free and the user's decision before it is over:
one statement, one transaction and one commit for all its requests (admit_requests() in
janus/db/sql/), each answered as it would have been alone at its place in the group's order,
the order they arrived in. A user has one decision under way per worker at most: a second
would only wait for the first on their bucket's row, where joining the next group shares
its statement and its commit.

Groups go oldest first among those whose user has nothing under way, and a group never holds
more than `max_jobs` jobs (a request is never split: one larger than that is a group of its
own). A group's requests wait `max_wait_s` at most, in the group and then for the pool's connection
together, as a request alone waits for the pool's: past it, they are answered 503. Atomic
batches and quotes keep their own transaction, and never wait here.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

from janus.admission import (
    Admission,
    AdmissionRequest,
    DatabaseUnavailable,
    GroupAdmitter,
    Mode,
    NoDecision,
)

Answer = Admission | NoDecision


@dataclass(eq=False)
class _Group:
    """One user's requests waiting for a connection, decided together once it is theirs."""

    user_id: UUID
    # time.monotonic() past which its requests have waited longer than they may.
    deadline: float
    requests: list[AdmissionRequest] = field(default_factory=list)
    jobs: int = 0
    # Set when a connection is handed to the group: its first request then decides it.
    started: threading.Event = field(default_factory=threading.Event)
    # Set when `answers` (one per request) or `failure` (the group's fault) is known.
    done: threading.Event = field(default_factory=threading.Event)
    answers: list[Answer] = field(default_factory=list)
    failure: BaseException | None = None

    def add(self, request: AdmissionRequest) -> int:
        """Add `request`; its place in the group."""
        self.requests.append(request)
        self.jobs += len(request.jobs)
        return len(self.requests) - 1


class GroupingAdmitter:
    """An Admitter that decides a user's queued single jobs and partial batches in groups.

    `connections` is how many of the worker's pooled connections admission may use at once
    (the pool's size): a request that finds fewer in use goes alone at once. `observe` is told
    each group's size in requests and in jobs, a request decided alone included.
    """

    def __init__(
        self,
        store: GroupAdmitter,
        *,
        connections: int,
        max_jobs: int,
        max_wait_s: float,
        observe: Callable[[int, int], None],
    ) -> None:
        self._store = store
        self._max_jobs = max_jobs
        self._max_wait_s = max_wait_s
        self._observe = observe
        self._lock = threading.Lock()
        self._free = connections
        # Users with a decision under way: at most one each.
        self._deciding: set[UUID] = set()
        # Groups waiting for a connection, oldest first; and each user's newest, while it can
        # still take requests.
        self._waiting: deque[_Group] = deque()
        self._open: dict[UUID, _Group] = {}

    def admit(self, request: AdmissionRequest) -> Admission:
        """Decide `request`: at once and alone if a connection is free and nothing of its user
        is being decided (an atomic batch always is), else in its user's next group. Raise its
        NoDecision, if it has one."""
        if request.mode is Mode.ATOMIC:
            return self._store.admit(request)
        user_id = request.user_id
        with self._lock:
            if self._free and user_id not in self._deciding:
                self._free -= 1
                self._deciding.add(user_id)
                group = None
            else:
                group = self._open.get(request.user_id)
                if group is None or group.jobs + len(request.jobs) > self._max_jobs:
                    group = _Group(user_id, time.monotonic() + self._max_wait_s)
                    self._waiting.append(group)
                    self._open[request.user_id] = group
                place = group.add(request)
        if group is None:
            try:
                self._observe(1, len(request.jobs))
                return self._store.admit(request)
            finally:
                self._release(user_id)
        if place == 0:
            self._lead(group)
        else:
            group.done.wait()
        if group.failure is not None:
            # Every request of the group raises it: it stored nothing of any of them.
            raise group.failure
        answer = group.answers[place]
        if isinstance(answer, NoDecision):
            raise answer
        return answer

    def quote(self, request: AdmissionRequest) -> Admission:
        """Quote `request` alone: a quote stores nothing, so it has nothing to share."""
        return self._store.quote(request)

    def waiting(self) -> int:
        """Requests waiting in groups for a connection, now."""
        with self._lock:
            return sum(len(group.requests) for group in self._waiting)

    def _lead(self, group: _Group) -> None:
        """As the group's first request: wait for its connection, decide it, and tell every
        request of it its answer."""
        try:
            waited = group.started.wait(group.deadline - time.monotonic())
            if not waited and self._abandon(group):
                group.failure = self._too_long()
                return
            try:
                # The wait in the group and for the pool's connection are one wait, bounded
                # once: as long as a request alone may wait for a connection.
                left = group.deadline - time.monotonic()
                if left <= 0:
                    raise self._too_long()
                self._observe(len(group.requests), group.jobs)
                group.answers = self._store.admit_group(group.requests, connection_timeout_s=left)
            finally:
                self._release(group.user_id)
        # Whatever it is, every request of the group must be answered with it.
        except BaseException as failure:
            group.failure = failure
        finally:
            group.done.set()

    def _too_long(self) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"no connection for admission within {self._max_wait_s:g} s", cause="pool_timeout"
        )

    def _abandon(self, group: _Group) -> bool:
        """Take `group` out of the queue after its wait ran out; False when a connection was
        handed to it meanwhile (it then goes on)."""
        with self._lock:
            if group.started.is_set():
                return False
            self._unqueue(group)
            return True

    def _unqueue(self, group: _Group) -> None:
        """Take `group` out of the queue, closed to new requests; the caller holds the lock."""
        self._waiting.remove(group)
        if self._open.get(group.user_id) is group:
            del self._open[group.user_id]

    def _release(self, user_id: UUID) -> None:
        """A decision of `user_id` is over and its connection back: hand connections to the
        oldest waiting groups whose users have none under way, closing each to new requests."""
        with self._lock:
            self._free += 1
            self._deciding.discard(user_id)
            for group in list(self._waiting):
                if not self._free:
                    break
                if group.user_id in self._deciding:
                    continue
                self._unqueue(group)
                self._free -= 1
                self._deciding.add(group.user_id)
                group.started.set()
