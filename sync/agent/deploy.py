"""One certificate's run: is it due? If so: a new key here, a CSR to the server (renew, or sign
the first time), the new pair verified in memory, the files swapped, the reload command run, and
the outcome reported to the server.

Rollback: when the reload command fails (exit status not 0, or past its timeout), the previous
files are put back and the reload command is run once more, so that a service which re-read the
new files is back on the old ones; the outcome is `rolled-back` (reported, exit 1). A first
deployment has nothing to go back to: its files stay and the outcome is `failed`. The new key
is then dropped, and the next run enrolls again (the daemon with backoff).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from collections.abc import Callable

from cryptography import x509

from sync.agent import files as agent_files, verify
from sync.agent.client import Client, Refused, Unreachable
from sync.agent.config import AgentConfig, CertificateSpec
from sync.clock import utcnow
from sync.errors import CertsyncError, VerifyError
from sync.pki import certs, csr as pki_csr

log = logging.getLogger("certsync.agent")


@dataclass
class Outcome:
    certificate: str
    status: str  # up-to-date | deployed | failed | rolled-back
    message: str
    serial: str | None = None
    not_after: datetime | None = None
    next_check: datetime | None = None  # when it is due (up-to-date, deployed)
    retry_after: float | None = None  # the server asked to wait this long
    reported: bool | None = None  # the server took the report (None: nothing to report)

    @property
    def ok(self) -> bool:
        return self.status in ("up-to-date", "deployed")

    def as_dict(self) -> dict:
        return {
            "certificate": self.certificate,
            "status": self.status,
            "message": self.message,
            "serial": self.serial,
            "not_after": self.not_after,
            "next_check": self.next_check,
            "reported": self.reported,
        }


@dataclass
class Deployer:
    config: AgentConfig
    client: Client
    now: Callable[[], datetime] = utcnow
    roots: list[x509.Certificate] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.roots:
            self.roots = verify.load_certificates(self.config.root_file().read_bytes())

    # -- the run ---------------------------------------------------------------------------------------
    def run(self, key: str, spec: CertificateSpec, *, force: bool = False) -> Outcome:
        name = spec.name or key
        found = agent_files.targets(spec, f"certificate.{key}")  # ConfigError before any request
        current = agent_files.read_pair(spec)
        problem = self._problem(name, spec, current)
        if current is not None and problem is None:
            renew_at = renew_time(current.leaf, spec)
            if not force and self.now() < renew_at:
                return Outcome(
                    name,
                    "up-to-date",
                    f"serial {current.serial} valid until "
                    f"{current.leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}; renews from "
                    f"{renew_at:%Y-%m-%dT%H:%M:%SZ}",
                    current.serial,
                    current.leaf.not_valid_after_utc,
                    renew_at,
                )
        try:
            new = self._enroll(name, spec)
        except Unreachable as exc:
            return Outcome(name, "failed", exc.message, retry_after=exc.retry_after)
        except CertsyncError as exc:
            return Outcome(name, "failed", exc.message)
        try:
            self._check(name, spec, new)
        except VerifyError as exc:  # issued but unfit: the files stay as they are
            return self._reported(
                Outcome(name, "failed", f"the new certificate is refused: {exc.message}", new.serial), new
            )
        return self._switch(name, spec, found, new, had_files=current is not None)

    def _problem(self, name: str, spec: CertificateSpec, pair: verify.Pair | None) -> str | None:
        if pair is None:
            return "no usable files"
        try:
            self._check(name, spec, pair)
        except VerifyError as exc:
            return exc.message
        return None

    def _check(self, name: str, spec: CertificateSpec, pair: verify.Pair) -> None:
        ips = [str(ipaddress.ip_address(a)) for a in spec.ip_addresses]
        verify.check(name, pair, self.roots, dns_names=spec.dns_names, ip_addresses=ips, now=self.now())

    def _enroll(self, name: str, spec: CertificateSpec) -> verify.Pair:
        """A new key made here and its certificate: renew when the server has the name, else sign."""
        key = certs.generate_key(spec.key_type)
        request = pki_csr.build_csr(
            key, common_name=spec.common_name, dns_names=list(spec.dns_names), ip_addresses=list(spec.ip_addresses)
        ).decode()
        enrollment = None
        if self.client.exists(name):
            try:
                enrollment = self.client.renew(name, request)
            except Refused as exc:  # 409: revoked, or not a CSR enrollment: a new version by sign
                if exc.status != 409:
                    raise
                log.info("certificate %r: renewal refused (%s); enrolling anew", name, exc.message)
        if enrollment is None:
            enrollment = self.client.sign(name, request)
        chain = verify.load_certificates(enrollment.chain_pem.encode())
        return verify.Pair(key=key, leaf=chain[0], intermediates=chain[1:])

    def _switch(
        self, name: str, spec: CertificateSpec, found: list[agent_files.Target], new: verify.Pair, *, had_files: bool
    ) -> Outcome:
        saved = agent_files.snapshot(found)
        try:
            agent_files.install(found, agent_files.render(new))
            on_disk = agent_files.read_pair(spec)
            if on_disk is None or on_disk.leaf != new.leaf:
                raise VerifyError(f"certificate {name!r}: the files read back differ from what was written")
            self._check(name, spec, on_disk)
        except (OSError, CertsyncError) as exc:
            agent_files.restore(found, saved)
            message = exc.message if isinstance(exc, CertsyncError) else f"writing the files failed: {exc}"
            return self._reported(Outcome(name, "failed", message, new.serial), new)
        failure = run_reload(spec, self.config.token_env)
        if failure is None:
            renew_at = renew_time(new.leaf, spec)
            return self._reported(
                Outcome(
                    name,
                    "deployed",
                    f"serial {new.serial} deployed" + (" and reloaded" if spec.reload else ""),
                    new.serial,
                    new.leaf.not_valid_after_utc,
                    renew_at,
                ),
                new,
            )
        if not had_files:
            return self._reported(
                Outcome(name, "failed", f"{failure}; first deployment: the new files stay", new.serial), new
            )
        agent_files.restore(found, saved)
        again = run_reload(spec, self.config.token_env)
        message = f"{failure}; previous files restored" + (
            f", but reloading them failed too: {again}" if again else " and reloaded"
        )
        return self._reported(Outcome(name, "rolled-back", message, new.serial), new)

    def _reported(self, outcome: Outcome, new: verify.Pair) -> Outcome:
        status = "deployed" if outcome.status == "deployed" else outcome.status
        try:
            self.client.report(
                outcome.certificate, new.serial, self.config.host, status, None if outcome.ok else outcome.message
            )
            outcome.reported = True
        except CertsyncError as exc:
            outcome.reported = False
            log.warning(
                "certificate %r: reporting %s to the server failed: %s", outcome.certificate, status, exc.message
            )
        return outcome


def renew_time(leaf: x509.Certificate, spec: CertificateSpec) -> datetime:
    begin, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    before = spec.renew_before
    if before.duration is not None:
        return end - before.duration
    return end - timedelta(seconds=(end - begin).total_seconds() * (before.fraction or 0))


def run_reload(spec: CertificateSpec, token_env: str) -> str | None:
    """Run the reload command (argv, no shell); None when it succeeded, else one line saying why.
    It gets our environment less the variable holding the API token."""
    if not spec.reload:
        return None
    program = spec.reload[0]
    env = {k: v for k, v in os.environ.items() if k != token_env}
    try:
        done = subprocess.run(  # noqa: S603  the operator's reload argv from the agent config; no shell
            spec.reload,
            capture_output=True,
            timeout=spec.reload_timeout.total_seconds(),
            stdin=subprocess.DEVNULL,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return f"reload command {program!r} did not finish within {spec.reload_timeout.total_seconds():g}s"
    except OSError as exc:
        return f"reload command {program!r} could not run: {exc.strerror or exc}"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
        return f"reload command {program!r} exited {done.returncode}" + (f": {tail[-1][:200]}" if tail else "")
    return None
