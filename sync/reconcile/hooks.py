"""Deploy hooks: a command and/or a webhook run after each successful push (after verify), with the
certificate's facts and never its key or payload, like certbot's deploy hooks.

They run outside the write path: a push that lands hands its facts here (main thread) and a small
pool of HOOK_WORKERS threads runs the hooks, each bounded by the destination's
deploy_hook_timeout (a command is killed with its process group), while the lanes go on pushing.

A failed hook (non-zero exit, timeout, HTTP error) fails only itself: the push stays recorded (the
next plan sees the copy in sync and does not push again), the report lists the failure per
destination, and the run exits 1. The failure is kept in the store (a settings row per target)
and the failed hook runs again, with the same facts and CERTSYNC_ATTEMPT one higher, on every
later run that finds that copy unchanged, until it succeeds; a newer push of the copy replaces
it, and a delete of the copy, or a certificate version no longer in force, drops it.

The hook's environment is certsync's own less every CERTSYNC_* variable (the master key, a store
URL with a password) and the PFX password and webhook Authorization variables the config names;
then the facts are set as CERTSYNC_* variables. The command also reads the facts as one JSON
document on its standard input; its output is kept off certsync's stdout (the last line of it
goes into the report when it fails).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING
from collections.abc import Iterable

from sync import logs
from sync.clock import rfc3339
from sync.pki.facts import fingerprint, san_strings
from sync.webhook import DeliveryError, send

if TYPE_CHECKING:
    from cryptography import x509

    from sync.config import Config
    from sync.reconcile.plan import Action
    from sync.reconcile.report import Result
    from sync.store import Store

log = logs.get("hooks")

HOOK_WORKERS = 4  # hooks in flight at once, all destinations together
OUTPUT_LIMIT = 64 * 1024  # bytes of a command's output kept (for its last line)
PENDING = "hook:"  # settings key prefix of a failed hook awaiting its retry
COMMAND, WEBHOOK = "command", "webhook"


@dataclass(frozen=True)
class HookResult:
    cert: str
    destination: str
    remote_name: str
    hook: str  # command | webhook
    ok: bool
    error: str | None = None
    attempt: int = 1

    def as_dict(self) -> dict:
        return {
            "certificate": self.cert,
            "destination": self.destination,
            "remote_name": self.remote_name,
            "hook": self.hook,
            "status": "ok" if self.ok else "failed",
            "error": self.error,
            "attempt": self.attempt,
        }


def facts_of(config: Config, action: Action, row, leaf: x509.Certificate, existed: bool | None = None) -> dict:
    """What a hook is told about a push (public facts only: the key and payload never come here)."""
    destination, remote_name = action.target()
    dest = config.destination[destination]
    sans = san_strings(leaf)
    return {
        "certificate": action.cert,
        "version": row.version,
        "serial": format(leaf.serial_number, "x"),
        "fingerprint_sha256": fingerprint(leaf),
        "not_before": rfc3339(leaf.not_valid_before_utc),
        "not_after": rfc3339(leaf.not_valid_after_utc),
        "subject": leaf.subject.rfc4514_string(),
        "issuer": leaf.issuer.rfc4514_string(),
        "sans": sans,
        "domains": [s[4:] for s in sans if s.startswith("DNS:")],
        "destination": destination,
        "provider": dest.provider,
        "secret_name": remote_name,
        "location": location(dest, remote_name),
        "action": "updated" if existed else "created",
        "reason": action.reason,
        "remote_version": None,
    }


def location(dest, name: str) -> str:
    """Where the copy is, as its cloud names it (no call: from the destination's keys)."""
    if getattr(dest, "vault_url", None):
        kind = "certificates" if getattr(dest, "object", "secret") == "certificate" else "secrets"
        return f"{dest.vault_url.rstrip('/')}/{kind}/{name}"
    if getattr(dest, "project", None):
        return f"projects/{dest.project}/secrets/{name}"
    service = getattr(dest, "service", None) or "secretsmanager"
    return f"aws:{service}:{getattr(dest, 'region', None) or 'default'}:{name}"


# facts whose plain CERTSYNC_<KEY> would be read as a config override (CERTSYNC_DESTINATION is the
# [destination] table) by a certsync the hook runs
ENV_NAMES = {"certificate": "CERTSYNC_CERT_NAME", "destination": "CERTSYNC_DESTINATION_NAME"}
PASSED_ON = {"CERTSYNC_CONFIG", "CERTSYNC_LOG_FORMAT"}  # not secret; a hook may run certsync itself


def environment(config: Config, facts: dict, attempt: int) -> dict[str, str]:
    """The command's environment: ours without secrets (every CERTSYNC_* but the config path and log
    format: the master key, a store URL with a password; the PFX passwords (destinations' and
    discovery's) and webhook Authorization the config names), plus the facts."""
    hidden = {n for d in config.destination.values() for n in (d.pkcs12_password_env, d.deploy_webhook_auth_env) if n}
    if config.discovery is not None and config.discovery.files.pkcs12_password_env:
        hidden.add(config.discovery.files.pkcs12_password_env)  # discovery's PFX password too
    env = {
        k: v
        for k, v in os.environ.items()
        if (k.upper() in PASSED_ON or not k.upper().startswith("CERTSYNC_")) and k not in hidden
    }
    for key, value in facts.items():
        if isinstance(value, list):
            value = " ".join(value)  # like certbot's RENEWED_DOMAINS
        env[ENV_NAMES.get(key, "CERTSYNC_" + key.upper())] = "" if value is None else str(value)
    env["CERTSYNC_ATTEMPT"] = str(attempt)
    return env


def run_command(argv: list[str], env: dict[str, str], stdin: bytes, timeout: float, cwd: str) -> str | None:
    """Run one hook command; None when it exited 0, else one line saying why."""
    try:
        proc = subprocess.Popen(  # noqa: S603  the operator's hook argv from the config; no shell
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )  # its own group: killed whole
    except OSError as exc:
        return f"cannot start {argv[0]!r}: {exc.strerror or exc.__class__.__name__}"
    try:
        output, _ = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        return f"timed out after {timeout:g}s (killed)"
    if proc.returncode == 0:
        return None
    last = next(
        (line for line in reversed(output[-OUTPUT_LIMIT:].decode("utf-8", "replace").splitlines()) if line.strip()), ""
    )
    how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
    return f"{how}" + (f": {logs.redact(last.strip())[:300]}" if last else "")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def pending_key(destination: str, remote_name: str) -> str:
    return PENDING + hashlib.sha256(f"{destination}\0{remote_name}".encode()).hexdigest()[:32]


class Hooks:
    """The hooks of one run: submitted as pushes land, waited for and recorded in `finish`."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config, self.store = config, store
        self.pool: ThreadPoolExecutor | None = None
        self.futures: list[Future] = []
        self.targets: dict[tuple[str, str], dict] = {}  # (destination, remote) -> facts of its last push
        self.deleted: set[tuple[str, str]] = set()

    def wanted(self, destination: str | None) -> bool:
        dest = self.config.destination.get(destination) if destination else None
        return dest is not None and dest.has_hooks

    def landed(self, result: Result | None) -> None:
        """A result from the lanes: a push that landed runs its destination's hooks."""
        if result is None or result.status != "done":
            return
        action = result.action
        if action.kind == "delete" and self.wanted(action.destination):
            self.deleted.add(action.target())
        elif action.kind == "push" and result.job is not None and result.job.facts is not None:
            facts = {**result.job.facts, "remote_version": result.detail or None}
            self.start(facts, [COMMAND, WEBHOOK], attempt=1)

    def start(self, facts: dict, kinds: Iterable[str], attempt: int) -> None:
        dest = self.config.destination[facts["destination"]]
        self.targets[(facts["destination"], facts["secret_name"])] = facts
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=HOOK_WORKERS, thread_name_prefix="certsync-hook")
        if COMMAND in kinds and dest.deploy_hook:
            self.futures.append(self.pool.submit(self._command, dest, facts, attempt))
        if WEBHOOK in kinds and dest.deploy_webhook:
            self.futures.append(self.pool.submit(self._webhook, dest, facts, attempt))

    def retry_pending(self, unchanged: Iterable[Action]) -> None:
        """Run again the hooks that failed after an earlier push of copies this run finds unchanged."""
        targets = {pending_key(*a.target()): a for a in unchanged if self.wanted(a.destination)}
        if not targets:
            return
        with self.store.transaction() as tx:
            found = tx.settings.get_many(targets)
            records = {key: json.loads(value) for key, value in found.items()}
            current = tx.certificates.current_many({r["facts"]["certificate"] for r in records.values()})
        stale = []
        for key, record in records.items():
            facts = record["facts"]
            row = current.get(facts["certificate"])
            if row is None or row.version != facts["version"]:
                stale.append(key)  # that version is no longer in force: its hooks are moot
                continue
            self.start(facts, record["failed"], attempt=record["attempts"] + 1)
        if stale:
            with self.store.transaction() as tx:
                tx.settings.delete_many(stale)

    def finish(self, *, cancel: bool = False) -> list[HookResult]:
        """Wait for every hook (each bounded by its timeout; `cancel`: a run cut short starts no
        more); keep failures for the next run, clear what succeeded or was deleted. The results,
        in the order they were started."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=cancel)
        results = [f.result() for f in self.futures if not f.cancelled()]
        self.futures = []
        failed: dict[tuple[str, str], list[HookResult]] = {}
        for r in results:
            if not r.ok:
                failed.setdefault((r.destination, r.remote_name), []).append(r)
        keep = {
            pending_key(*t): json.dumps(
                {"facts": self.targets[t], "failed": [r.hook for r in rs], "attempts": max(r.attempt for r in rs)}
            ).encode()
            for t, rs in failed.items()
        }
        clear = [pending_key(*t) for t in {*self.targets, *self.deleted} if t not in failed]
        if keep or clear:
            with self.store.transaction() as tx:
                tx.settings.delete_many(clear)
                tx.settings.put_many(keep)
        return results

    def _command(self, dest, facts: dict, attempt: int) -> HookResult:
        body = json.dumps(facts).encode()
        error = run_command(
            list(dest.deploy_hook),
            environment(self.config, facts, attempt),
            body,
            dest.deploy_hook_timeout.total_seconds(),
            str(self.config.base_dir),
        )
        return self._done(facts, COMMAND, error, attempt)

    def _webhook(self, dest, facts: dict, attempt: int) -> HookResult:
        headers = {}
        if dest.deploy_webhook_auth_env:
            value = os.environ.get(dest.deploy_webhook_auth_env)
            if not value:
                return self._done(
                    facts,
                    WEBHOOK,
                    f"deploy_webhook_auth_env: environment variable {dest.deploy_webhook_auth_env} is not set",
                    attempt,
                )
            headers["Authorization"] = value
        body = {"source": "certsync", "event": "deployed", "attempt": attempt, **facts}
        try:
            send(dest.deploy_webhook, body, timeout=dest.deploy_hook_timeout.total_seconds(), headers=headers)
            error = None
        except DeliveryError as exc:
            error = f"deploy_webhook: {exc}"
        return self._done(facts, WEBHOOK, error, attempt)

    @staticmethod
    def _done(facts: dict, hook: str, error: str | None, attempt: int) -> HookResult:
        result = HookResult(
            facts["certificate"], facts["destination"], facts["secret_name"], hook, error is None, error, attempt
        )
        where = f"{result.cert} -> {result.destination}/{result.remote_name}"
        extra = {
            "event": f"hook.{'ok' if result.ok else 'failed'}",
            "certificate": result.cert,
            "destination": result.destination,
            "remote_name": result.remote_name,
            "hook": hook,
            "attempt": attempt,
        }
        if result.ok:
            log.info(f"deploy hook {hook} {where}: ok (attempt {attempt})", extra=extra)
        else:
            log.error(f"deploy hook {hook} {where}: failed (attempt {attempt}): {error}", extra=extra)
        return result
