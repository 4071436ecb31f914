"""A write that reached the cloud but whose answer was lost (connection reset after the create):
the SDK retries and hears "already exists"; a secret with our tags, certificate and fingerprint
is the write done, not a failure (providers/base.py, per-cloud `_already_exists`)."""

from tests.e2e.test_aws_e2e import WRITES
from tests.support.counting_proxy import LostResponseProxy


def test_aws_create_whose_answer_was_lost_is_done(project, aws_endpoint, secretsmanager, name_prefix):
    with LostResponseProxy(aws_endpoint, "CreateSecret") as proxy:
        project.write(f"""
[destination.aws]
provider = "aws"
region = "us-east-1"
endpoint_url = "{proxy.url}"

[certificate.{name_prefix}-lost]
profile = "tls-server"
common_name = "lost.example.internal"
destinations = ["aws"]
""")
        project.run("init")
        report = project.json("apply")
        assert report["summary"] == {"issue": 1, "push": 1}, report
        assert proxy.calls["CreateSecret"] == 2 and proxy.left == 0  # the write, then the SDK's retry
        assert "PutSecretValue" not in proxy.calls  # the first create did the job
        described = secretsmanager.describe_secret(SecretId=f"{name_prefix}-lost")
        tags = {t["Key"]: t["Value"] for t in described["Tags"]}
        assert tags["certsync-cert"] == f"{name_prefix}-lost"
        proxy.reset()
        again = project.json("apply")
        assert again["summary"] == {"unchanged": 1}, again
        assert not WRITES & set(proxy.calls), proxy.calls
