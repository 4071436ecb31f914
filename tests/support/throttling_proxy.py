"""A CountingProxy that throttles: the first N write calls are answered with AWS's throttling
error instead of being forwarded, the way Secrets Manager answers over its rate limits.

LocalStack never throttles; put this in front of it to check that a client's own retry (botocore's
standard mode retries ThrottlingException) turns a throttled call into a success:

    with ThrottlingProxy(localstack_url, throttle_first=2) as proxy:
        client = boto3.client("secretsmanager", endpoint_url=proxy.url, ...)
        ...
        assert proxy.throttled == 2
"""

from __future__ import annotations

import json

from tests.support.counting_proxy import CountingProxy

# Secrets Manager calls that change something (the AWS quotas page limits these per second).
WRITE_CALLS = frozenset(
    {
        "CreateSecret",
        "PutSecretValue",
        "UpdateSecret",
        "UpdateSecretVersionStage",
        "DeleteSecret",
        "RestoreSecret",
        "TagResource",
        "UntagResource",
        "PutResourcePolicy",
        "DeleteResourcePolicy",
        "RotateSecret",
        "CancelRotateSecret",
        "ReplicateSecretToRegions",
        "RemoveRegionsFromReplication",
        "StopReplicationToReplica",
    }
)
THROTTLED_BODY = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()


class ThrottlingProxy(CountingProxy):
    def __init__(self, upstream: str, *, throttle_first: int, calls: frozenset[str] = WRITE_CALLS) -> None:
        super().__init__(upstream)
        self.throttle_first = throttle_first
        self.throttled_calls = calls
        self.throttled = 0  # throttling answers sent so far

    def answer(self, name: str) -> tuple[int, dict[str, str], bytes] | None:
        if name not in self.throttled_calls:
            return None
        with self._lock:
            if self.throttled >= self.throttle_first:
                return None
            self.throttled += 1
        return (
            400,
            {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": f"throttled-{self.throttled}"},
            THROTTLED_BODY,
        )
