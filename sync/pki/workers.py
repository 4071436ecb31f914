"""CPU-bound crypto in worker processes: RSA key generation and password-protected PFX rendering.

The pool is sized to the cores this process may use (CERTSYNC_CRYPTO_WORKERS overrides it; 0
keeps everything in this process), started on first need and kept for the process. It is used
only when a call has at least POOL_MIN such jobs, so that a worker's start (~0.1-0.3 s) pays off:
ec-p256 keys (~50 µs) and payloads without a password stay in-process, where a round trip
through a worker would cost more than the work itself. Workers come from a fork server (no fork
of a process that runs threads), started without the parent's __main__ (a CLI script would
otherwise be imported again in every worker, ~1 s each). Keys cross to and from the workers as PKCS#8 DER over the
pool's pipes to our own child processes, never through a file; a pool that breaks falls back to
in-process work.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import types
from collections import defaultdict, deque
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from typing import Any, cast
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sync.pki import certs, render
from sync.pki.bundle import Bundle

POOL_MIN = 16  # jobs in one call before the pool is worth starting
_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
_BLANK_MAIN = types.ModuleType("__main__")


class _Process(multiprocessing.context.ForkServerProcess):
    """A worker started without the parent's __main__: the pool runs only this module's functions,
    so re-running the parent's script (the CLI, a benchmark, pytest) in each worker is pure cost."""

    @staticmethod
    def _Popen(process_obj: multiprocessing.process.BaseProcess) -> Any:
        from multiprocessing import popen_forkserver

        main = sys.modules["__main__"]
        with _pool_lock:  # workers start from one thread at a time (the pool's own)
            sys.modules["__main__"] = _BLANK_MAIN
            try:
                return popen_forkserver.Popen(process_obj)
            finally:
                sys.modules["__main__"] = main


class _Context(multiprocessing.context.ForkServerContext):
    Process = _Process


def worker_count() -> int:
    configured = os.environ.get("CERTSYNC_CRYPTO_WORKERS", "").strip()
    if configured.isdigit():
        return int(configured)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pool(jobs: int) -> ProcessPoolExecutor | None:
    """The shared pool, when `jobs` pieces of work justify it and workers are allowed."""
    global _pool
    workers = worker_count()
    if jobs < POOL_MIN or workers < 1:
        return None
    with _pool_lock:
        if _pool is None:
            context = _Context()
            context.set_forkserver_preload([__name__])
            _pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    return _pool


def shutdown() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None


def _pkcs8(key: certs.PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(der: bytes) -> certs.PrivateKey:
    # made by our own worker from a validated generator: re-validating an RSA key costs ~ms
    key = serialization.load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True)
    return cast(certs.PrivateKey, key)  # one of ours: certs.generate_key or a Bundle's key


# --- RSA keys, made ahead ------------------------------------------------------------------------


def _rsa_der(key_type: str) -> bytes:
    return _pkcs8(certs.generate_key(key_type))


class Keys:
    """Fresh keys for one issuance call: RSA keys are made ahead in the pool (prefetch), the
    others when asked. A key asked for and not made ahead is made in-process."""

    def __init__(self, key_types: Iterable[str | None]) -> None:
        self.types = list(key_types)  # per request: the fresh key type it will need, or None
        rsa = sum(1 for t in self.types if t and t.startswith("rsa-"))
        self.pool = pool(rsa)
        self.ahead: dict[str, deque[Future[bytes]]] = defaultdict(deque)
        self.next = 0  # requests below this index have their keys under way

    def prefetch(self, upto: int) -> None:
        """Start the keys of the requests up to index `upto` (a window ahead of the signing)."""
        if self.pool is None:
            return
        for key_type in self.types[self.next : upto]:
            if key_type and key_type.startswith("rsa-"):
                try:
                    self.ahead[key_type].append(self.pool.submit(_rsa_der, key_type))
                except RuntimeError:  # broken or shut down: in-process from now on
                    self.pool = None
                    return
        self.next = max(self.next, upto)

    def make(self, key_type: str) -> certs.PrivateKey:
        """A key made ahead if one is ready; otherwise this thread makes one rather than wait (it
        would idle while the workers start or catch up), and the ones under way serve later."""
        queue = self.ahead.get(key_type)
        if queue and queue[0].done():
            try:
                return _load_key(queue.popleft().result())
            except Exception:  # noqa: S110  a worker died (BrokenProcessPool): make it here
                pass
        elif queue and queue[-1].cancel():  # made here instead: one fewer to make there
            queue.pop()
        return certs.generate_key(key_type)

    def close(self) -> None:
        for queue in self.ahead.values():
            for future in queue:
                future.cancel()
        self.ahead.clear()


# --- payloads that cost a KDF ----------------------------------------------------------------------

# name, version, certificate, key (PKCS#8), intermediates, root: DER, to cross to a worker
_Parts = tuple[str, int, bytes, bytes, list[bytes], bytes]


def needs_kdf(options: render.RenderOptions) -> bool:
    return options.format == "pkcs12" and bool(options.pkcs12_password_env)


def _render_parts(parts: _Parts, options: render.RenderOptions, password: bytes) -> render.Payload:
    name, version, cert_der, key_der, chain_ders, root_der = parts
    bundle = Bundle(
        name,
        version,
        x509.load_der_x509_certificate(cert_der),
        _load_key(key_der),
        [x509.load_der_x509_certificate(d) for d in chain_ders],
        x509.load_der_x509_certificate(root_der),
    )
    return render.render(bundle, options, password=password)


class Rendering:
    """A payload under way: in the pool, or rendered here at once. `result()` gives the payload or
    raises what rendering raised; a pool that broke meanwhile renders it here instead."""

    def __init__(
        self, bundle: Bundle, options: render.RenderOptions, future: Future[render.Payload] | None = None
    ) -> None:
        self.bundle, self.options, self.future = bundle, options, future
        self.payload: render.Payload | None = None
        self.error: Exception | None = None
        if future is None:
            self._here()

    def _here(self) -> None:
        try:
            self.payload = render.render(self.bundle, self.options)
        except Exception as exc:  # raised again by result(), in the caller's order
            self.error = exc

    def result(self) -> render.Payload:
        if self.future is not None:
            try:
                self.payload = self.future.result()
            except BrokenExecutor:
                self._here()
            self.future = None
        self.bundle = None  # type: ignore[assignment]  # its key is not kept past its payload
        if self.error is not None:
            raise self.error
        assert self.payload is not None
        return self.payload


def render_all(items: list[tuple[Bundle, render.RenderOptions]]) -> list[Rendering]:
    """Render each (bundle, options): those with a PFX password in the pool when there are at
    least POOL_MIN of them, the others here. In order."""
    der = serialization.Encoding.DER
    heavy = [needs_kdf(options) and bundle.private_key is not None for bundle, options in items]
    workers = pool(sum(heavy))
    out = []
    for (bundle, options), kdf in zip(items, heavy, strict=True):
        future = None
        if workers is not None and kdf and bundle.private_key is not None:
            try:
                password = render.pkcs12_password(options.pkcs12_password_env or "")  # read here, not in a worker
                parts = (
                    bundle.name,
                    bundle.version,
                    bundle.certificate.public_bytes(der),
                    _pkcs8(bundle.private_key),
                    [c.public_bytes(der) for c in bundle.intermediates],
                    bundle.root.public_bytes(der),
                )
                future = workers.submit(_render_parts, parts, options, password)
            except RuntimeError:  # the pool is shut down or broken: here from now on
                workers = None
            except Exception:  # e.g. the password variable is not set: render() says so, here
                future = None
        out.append(Rendering(bundle, options, future))
    return out
