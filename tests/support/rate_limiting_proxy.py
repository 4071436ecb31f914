"""A CountingProxy that enforces AWS Secrets Manager's per-API rate quotas, the way the service does.

LocalStack never throttles. Put this in front of it and every call of a rate-limited API group is
admitted while its group has seen fewer than `limit` admitted calls in the last `window` seconds
(a sliding window), and answered with AWS's throttling error otherwise (HTTP 400
`{"__type":"ThrottlingException","message":"Rate exceeded"}`), without reaching LocalStack. A
throttled call consumes nothing. Calls outside every group are forwarded untouched.

    with RateLimitingProxy(localstack_url) as proxy:         # AWS_LIMITS by default
        ...                                                   # point boto3 at proxy.url
        proxy.admitted["CreateSecret"], proxy.throttled["CreateSecret"], proxy.times["CreateSecret"]

`times[group]` / `throttled_times[group]` hold the monotonic arrival time of every admitted / throttled
call (for achieved-rate figures); `writes_by_secret[(group, secret)]` counts the calls of the write
groups per secret (SecretId or Name) that the upstream carried out (2xx: a retried CreateSecret that
heard "already exists" wrote nothing). `latency` (seconds) delays every call before it is
admitted or throttled: a network's round trip, for benchmarks.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable, Mapping

from tests.support.counting_proxy import CountingProxy
from tests.support.throttling_proxy import THROTTLED_BODY

# Per-region quotas from the AWS Secrets Manager quotas page (reference_limits.html). Groups share
# one budget. CreateSecret and DeleteSecret are not in the rows we could check: 50/s assumed, like
# every other control-plane API on that page. DescribeSecret + GetSecretValue: 10,000/s (page), so
# they never throttle here.
AWS_LIMITS: dict[str, tuple[frozenset[str], int]] = {
    "PutSecretValue+UpdateSecret": (
        frozenset(
            {
                "PutSecretValue",
                "UpdateSecret",
                "UpdateSecretVersionStage",
                "RemoveRegionsFromReplication",
                "ReplicateSecretToRegions",
                "StopReplicationToReplica",
            }
        ),
        50,
    ),
    "TagResource+UntagResource": (frozenset({"TagResource", "UntagResource"}), 50),
    "CreateSecret": (frozenset({"CreateSecret"}), 50),  # assumed
    "DeleteSecret": (frozenset({"DeleteSecret"}), 50),  # assumed
    "RestoreSecret": (frozenset({"RestoreSecret"}), 50),
    "RotateSecret+CancelRotateSecret": (frozenset({"RotateSecret", "CancelRotateSecret"}), 50),
    "ResourcePolicy": (
        frozenset({"DeleteResourcePolicy", "GetResourcePolicy", "PutResourcePolicy", "ValidateResourcePolicy"}),
        50,
    ),
    "DescribeSecret+GetSecretValue": (frozenset({"DescribeSecret", "GetSecretValue"}), 10_000),
    "ListSecrets": (frozenset({"ListSecrets", "ListSecretVersionIds"}), 100),
    "BatchGetSecretValue": (frozenset({"BatchGetSecretValue"}), 100),
}


class RateLimitingProxy(CountingProxy):
    def __init__(
        self,
        upstream: str,
        limits: Mapping[str, tuple[frozenset[str], int]] = AWS_LIMITS,
        *,
        window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        latency: float = 0.0,
    ) -> None:
        super().__init__(upstream)
        self.latency = latency
        self._call = threading.local()  # the secret the handler thread's call names
        self.writes_by_secret: collections.Counter[tuple[str, str]] = collections.Counter()
        self.limits = {group: limit for group, (_, limit) in limits.items()}
        self.group_of = {call: group for group, (calls, _) in limits.items() for call in calls}
        self.window, self._clock = window, clock
        self._recent: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self.admitted: collections.Counter[str] = collections.Counter()
        self.throttled: collections.Counter[str] = collections.Counter()
        self.times: dict[str, list[float]] = collections.defaultdict(list)
        self.throttled_times: dict[str, list[float]] = collections.defaultdict(list)
        self._rate_lock = threading.Lock()

    def reset(self) -> None:
        """Zero the counts and timestamps (the sliding windows keep running)."""
        super().reset()
        with self._rate_lock:
            self.admitted.clear()
            self.throttled.clear()
            self.times.clear()
            self.throttled_times.clear()
            self.writes_by_secret.clear()

    def observe(self, name: str, body: bytes | None) -> None:
        if self.latency > 0:
            time.sleep(self.latency)
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            doc = {}
        self._call.secret = (doc.get("SecretId") or doc.get("Name")) if isinstance(doc, dict) else None

    def settled(self, name: str, status: int) -> None:
        group = self.group_of.get(name)
        secret = getattr(self._call, "secret", None)
        if group and secret and limit_is_write(group) and 200 <= status < 300:
            with self._rate_lock:
                self.writes_by_secret[(group, secret)] += 1

    def answer(self, name: str) -> tuple[int, dict[str, str], bytes] | None:
        group = self.group_of.get(name)
        if group is None:
            return None
        with self._rate_lock:
            now = self._clock()
            recent = self._recent[group]
            while recent and recent[0] <= now - self.window:
                recent.popleft()
            if len(recent) >= self.limits[group]:
                self.throttled[group] += 1
                self.throttled_times[group].append(now)
                n = sum(self.throttled.values())
            else:
                recent.append(now)
                self.admitted[group] += 1
                self.times[group].append(now)
                return None
        return 400, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": f"throttled-{n}"}, THROTTLED_BODY


def limit_is_write(group: str) -> bool:
    """The groups whose calls change a secret (reads and listings are not writes)."""
    return group not in ("DescribeSecret+GetSecretValue", "ListSecrets", "BatchGetSecretValue", "ResourcePolicy")
