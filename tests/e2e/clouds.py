"""Per-cloud pieces for end-to-end tests: the destination block certsync is given, and an official
client that reads back (and tampers with) what certsync wrote, independently of certsync."""

from __future__ import annotations

import json
import urllib.request
import ssl
from dataclasses import dataclass


@dataclass
class Cloud:
    kind: str
    entry: dict
    project: str = ""

    # -- config ------------------------------------------------------------------------------------
    def destination(self, name: str, fmt: str = "json", extra: str = "") -> str:
        endpoint = self.entry["endpoint"]
        if self.kind == "aws":
            body = f'provider = "aws"\nregion = "us-east-1"\nendpoint_url = "{endpoint}"'
        elif self.kind == "gcp":
            body = f'provider = "gcp"\nproject = "{self.project}"\nendpoint = "{endpoint}"\ninsecure = true'
        else:
            body = (
                f'provider = "azure"\nvault_url = "{endpoint}"\nca_bundle = "{self.entry["ca_bundle"]}"\n'
                "verify_challenge_resource = false"
            )
        return f'\n[destination.{name}]\n{body}\nformat = "{fmt}"\n{extra}\n'

    def env(self) -> dict[str, str]:
        if self.kind == "azure":
            return {
                "IDENTITY_ENDPOINT": f"{self.entry['endpoint']}/msi/token",
                "IDENTITY_HEADER": "certsync-e2e",
                "REQUESTS_CA_BUNDLE": self.entry["ca_bundle"],
            }
        return {}

    # -- reading back with the official SDKs ---------------------------------------------------------
    def read(self, name: str) -> str | None:
        return getattr(self, f"_read_{self.kind}")(name)

    def _read_aws(self, name):
        client = self._aws()
        try:
            return client.get_secret_value(SecretId=name)["SecretString"]
        except client.exceptions.ResourceNotFoundException:
            return None

    def _read_gcp(self, name):
        from google.api_core import exceptions

        try:
            response = self._gcp().access_secret_version(name=f"projects/{self.project}/secrets/{name}/versions/latest")
        except exceptions.NotFound:
            return None
        return response.payload.data.decode()

    def _read_azure(self, name):
        from azure.core.exceptions import ResourceNotFoundError

        try:
            secret = self._azure().get_secret(name)
        except ResourceNotFoundError:
            return None
        return secret.value

    def content_type(self, name: str) -> str | None:
        return self._azure().get_secret(name).properties.content_type

    def delete_outside(self, name: str) -> None:
        if self.kind == "aws":
            self._aws().delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        elif self.kind == "gcp":
            self._gcp().delete_secret(name=f"projects/{self.project}/secrets/{name}")
        else:
            client = self._azure()
            client.begin_delete_secret(name).wait()
            client.purge_deleted_secret(name)

    def write_calls(self) -> int:
        """Write calls the emulator has seen (for this test's project on GCP)."""
        if self.kind == "gcp":
            import grpc

            with grpc.insecure_channel(self.entry["endpoint"]) as channel:
                stats = json.loads(channel.unary_unary("/certsync.emulator.v1.Admin/GetStats")(b""))
            calls = next((v for k, v in stats["by_project"].items() if self.project in k), {})
            calls = calls.get("calls", calls)
            writes = (
                "CreateSecret",
                "AddSecretVersion",
                "UpdateSecret",
                "DeleteSecret",
                "DestroySecretVersion",
                "DisableSecretVersion",
                "EnableSecretVersion",
            )
            return sum(n for method, n in calls.items() if method in writes)
        if self.kind == "azure":
            context = ssl.create_default_context(cafile=self.entry["ca_bundle"])
            with urllib.request.urlopen(self.entry["endpoint"] + "/_emulator/stats", context=context) as resp:
                stats = json.load(resp)
            writes = ("SetSecret", "UpdateSecret", "DeleteSecret", "PurgeDeletedSecret", "RecoverDeletedSecret")
            return sum(v["total"] for op, v in stats["operations"].items() if op in writes)
        raise NotImplementedError("AWS calls are counted by tests.support.counting_proxy")

    # -- clients -----------------------------------------------------------------------------------
    def _aws(self):
        import boto3

        return boto3.client(
            "secretsmanager",
            endpoint_url=self.entry["endpoint"],
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def _gcp(self):
        import grpc
        from google.cloud import secretmanager
        from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
            SecretManagerServiceGrpcTransport,
        )

        transport = SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(self.entry["endpoint"]))
        return secretmanager.SecretManagerServiceClient(transport=transport)

    def _azure(self):
        import os
        from azure.identity import ManagedIdentityCredential
        from azure.keyvault.secrets import SecretClient

        # the managed identity endpoint comes from the environment; the CA bundle is passed explicitly
        # (in os.environ it would reach every later HTTPS client of this process, pip among them)
        os.environ.update({k: v for k, v in self.env().items() if k != "REQUESTS_CA_BUNDLE"})
        ca = self.entry["ca_bundle"]
        return SecretClient(
            self.entry["endpoint"],
            ManagedIdentityCredential(connection_verify=ca),
            verify_challenge_resource=False,
            connection_verify=ca,
        )
