"""`certsync agent` without a server: its config, the file set (atomic writes, modes, owners,
restore), the checks a new pair must pass, and a deployment's run with rollback. The server is
stood in for by `LocalServer`, a CA made here with sync.pki that signs the agent's real CSRs; the
agent against a real `certsync serve` and nginx is tests/e2e/test_agent_nginx.py."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sync.agent import config as agent_config
from sync.agent import files as agent_files
from sync.agent import verify
from sync.agent.client import Enrollment, Refused, Unreachable
from sync.agent.deploy import Deployer, renew_time
from sync.agent.loop import backoff, run_once
from sync.clock import utcnow
from sync.errors import ConfigError, VerifyError
from sync.pki import certs

PEM = serialization.Encoding.PEM


class LocalServer:
    """Stands in for the REST client: a real two-level CA signing the agent's real CSRs."""

    def __init__(self, validity: timedelta = timedelta(days=30)) -> None:
        root_key, issuing_key = certs.generate_key("ec-p256"), certs.generate_key("ec-p256")
        self.root = certs.create_ca("CN=Agent Test Root", root_key, timedelta(days=365))
        issuing = certs.create_ca(
            "CN=Agent Test Issuing", issuing_key, timedelta(days=300), parent=certs.Issuer(self.root, root_key)
        )
        self.issuer = certs.Issuer(issuing, issuing_key)
        self.validity = validity
        self.names: set[str] = set()
        self.calls: list[str] = []
        self.reports: list[tuple] = []
        self.down = False
        self.extra_names: list[str] = []

    def exists(self, name: str) -> bool:
        self._up()
        return name in self.names

    def sign(self, name: str, csr_pem: str) -> Enrollment:
        self.calls.append("sign")
        self.names.add(name)
        return self._enroll(csr_pem)

    def renew(self, name: str, csr_pem: str) -> Enrollment:
        self.calls.append("renew")
        return self._enroll(csr_pem)

    def report(self, name, serial, host, outcome, detail=None) -> dict:
        self._up()
        self.reports.append((name, serial, outcome, detail))
        return {}

    def _up(self) -> None:
        if self.down:
            raise Unreachable("GET https://pki.test/api/v1/certificates/web: connection refused", retry_after=7)

    def _enroll(self, csr_pem: str) -> Enrollment:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        leaf = certs.issue_leaf(
            self.issuer,
            csr.public_key(),
            common_name=None,
            dns_names=[*sans.get_values_for_type(x509.DNSName), *self.extra_names],
            validity=self.validity,
        )
        chain = leaf.public_bytes(PEM) + self.issuer.certificate.public_bytes(PEM)
        return Enrollment(format(leaf.serial_number, "x"), 1, leaf.public_bytes(PEM).decode(), chain.decode())


def write_config(folder: Path, server: LocalServer, reload: list[str] | None = None, extra: str = "") -> Path:
    (folder / "root.pem").write_bytes(server.root.public_bytes(PEM))
    out = folder / "tls"
    out.mkdir(exist_ok=True)
    path = folder / "agent.toml"
    path.write_text(f'''
server = "https://pki.example.internal:8443"
ca_bundle = "root.pem"
host = "web-1"
[certificate.web]
dns_names = ["web.example.internal"]
cert = "{out}/web.crt"
chain = "{out}/web.chain.pem"
fullchain = "{out}/web.fullchain.pem"
key = "{out}/web.key"
reload = {json.dumps(reload or [])}
{extra}
''')
    return path


def deployer(folder: Path, server: LocalServer, reload: list[str] | None = None, extra: str = "") -> Deployer:
    return Deployer(agent_config.load(write_config(folder, server, reload, extra)), server)  # type: ignore[arg-type]


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "tls").iterdir())}


# -- config ------------------------------------------------------------------------------------------------
def test_config_from_an_agent_table_with_defaults(tmp_path):
    server = LocalServer()
    write_config(tmp_path, server)
    (tmp_path / "sync.toml").write_text(
        "[store]\nurl = 'sqlite:///x.db'\n[agent]\n"
        + (tmp_path / "agent.toml").read_text().replace("[certificate.", "[agent.certificate.")
    )
    config = agent_config.load(tmp_path / "sync.toml")
    spec = config.certificate["web"]
    assert config.root_file() == tmp_path / "root.pem"
    assert spec.key_type == "ec-p256" and spec.renew_before.fraction == pytest.approx(0.33)
    assert spec.files()["key"].mode is None and agent_config.DEFAULT_MODES["key"] == 0o600


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            'server = "https://pki.example.internal:8443"',
            'server = "http://pki.example.internal"',
            "server: http is allowed only on loopback",
        ),
        ('server = "https://pki.example.internal:8443"', 'server = "ftp://x"', "server: must be an http(s) URL"),
        ('key = "/', 'key = "relative/', "certificate.web.key.path: must be an absolute path"),
        ("[certificate.web]", '[certificate.web]\nreload_timeout = "soon"', "certificate.web.reload_timeout: must be"),
        ('cert = "', 'cert = { path = "/tmp/k", mode = "0999" }\nx = "', "certificate.web.cert.mode: must be an octal"),
        ('chain = "', 'chain = "/tmp/same"\nfullchain_ = "', "unknown key"),
        ('host = "web-1"', 'colour = "blue"', "colour: unknown key"),
        ("[certificate.web]", "[certificate.Web]", "certificate: 'Web': store names are"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path, old, new, message):
    path = write_config(tmp_path, LocalServer())
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        agent_config.load(path)
    assert message in caught.value.message and "\n" not in caught.value.message


def test_the_same_file_twice_is_refused(tmp_path):
    path = write_config(tmp_path, LocalServer())
    path.write_text(path.read_text().replace("web.chain.pem", "web.crt"))
    with pytest.raises(ConfigError, match="cert, chain, fullchain and key must be different files"):
        agent_config.load(path)


def test_cli_bad_config_exits_2_with_one_line(tmp_path):
    path = write_config(tmp_path, LocalServer())
    path.write_text(path.read_text().replace('dns_names = ["web.example.internal"]', ""))
    result = subprocess.run(
        [sys.executable, "-m", "sync", "agent", "--once", "--agent-config", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "CERTSYNC_AGENT_TOKEN": "t"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {path}: certificate.web: give at least one of dns_names, ip_addresses, common_name"
    ]


def test_token_from_file_or_env_never_from_config(tmp_path, monkeypatch):
    path = write_config(tmp_path, LocalServer())
    monkeypatch.delenv("CERTSYNC_AGENT_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="token: environment variable CERTSYNC_AGENT_TOKEN is empty or unset"):
        agent_config.load(path).token()
    monkeypatch.setenv("CERTSYNC_AGENT_TOKEN", "cst_from-env")
    assert agent_config.load(path).token() == "cst_from-env"
    (tmp_path / "token").write_text("cst_from-file\n")
    path.write_text('token_file = "token"\n' + path.read_text())
    assert agent_config.load(path).token() == "cst_from-file"
    path.write_text('token = "cst_inline"\n' + path.read_text())
    with pytest.raises(ConfigError, match="token: unknown key"):
        agent_config.load(path)


# -- files ---------------------------------------------------------------------------------------------------
def test_install_sets_modes_and_restore_puts_the_old_set_back(tmp_path):
    server = LocalServer()
    config = agent_config.load(write_config(tmp_path, server))
    spec = config.certificate["web"]
    found = agent_files.targets(spec, "certificate.web")
    (tmp_path / "tls" / "web.key").write_bytes(b"old key")
    (tmp_path / "tls" / "web.key").chmod(0o644)  # an old file's mode is not kept
    saved = agent_files.snapshot(found)
    key = certs.generate_key("ec-p256")
    leaf = certs.issue_leaf(
        server.issuer,
        key.public_key(),
        common_name=None,
        dns_names=["web.example.internal"],
        validity=timedelta(days=1),
    )
    agent_files.install(found, agent_files.render(verify.Pair(key, leaf, [server.issuer.certificate])))
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "tls").iterdir()}
    assert modes == {"web.key": 0o600, "web.crt": 0o644, "web.chain.pem": 0o644, "web.fullchain.pem": 0o644}
    assert agent_files.read_pair(spec).leaf == leaf
    assert not [p for p in (tmp_path / "tls").iterdir() if p.name.startswith(".")]  # no temp file left
    agent_files.restore(found, saved)
    assert files_of(tmp_path) == {"web.key": b"old key"}  # the others were absent before


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_owner_group_and_mode_from_config(tmp_path):
    server = LocalServer()
    path = write_config(tmp_path, server)
    path.write_text(
        path.read_text().replace(
            f'key = "{tmp_path}/tls/web.key"',
            f'key = {{ path = "{tmp_path}/tls/web.key", owner = "nobody", group = "nogroup", mode = "0640" }}',
        )
    )
    outcome = run_once(Deployer(agent_config.load(path), server))[0]  # type: ignore[arg-type]
    assert outcome.status == "deployed", outcome.message
    info = (tmp_path / "tls" / "web.key").stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 65534, 0o640)


def test_unknown_owner_is_a_config_error(tmp_path):
    server = LocalServer()
    path = write_config(tmp_path, server)
    path.write_text(
        path.read_text().replace(
            f'cert = "{tmp_path}/tls/web.crt"',
            f'cert = {{ path = "{tmp_path}/tls/web.crt", owner = "no-such-user-x" }}',
        )
    )
    with pytest.raises(ConfigError, match="certificate.web.cert.owner: no user 'no-such-user-x' on this host"):
        run_once(Deployer(agent_config.load(path), server))  # type: ignore[arg-type]
    assert server.calls == []


# -- verification --------------------------------------------------------------------------------------------
def _pair(
    server: LocalServer, *, names=("web.example.internal",), validity=timedelta(days=1), key=None, issuer=None
) -> verify.Pair:
    key = key or certs.generate_key("ec-p256")
    issuer = issuer or server.issuer
    leaf = certs.issue_leaf(issuer, key.public_key(), common_name=None, dns_names=list(names), validity=validity)
    return verify.Pair(key, leaf, [issuer.certificate])


def test_verify_accepts_a_good_pair_and_refuses_each_fault(tmp_path):
    server, other = LocalServer(), LocalServer()
    roots = [server.root]
    good = _pair(server)

    def check(pair, now=None):
        verify.check("web", pair, roots, dns_names=["web.example.internal"], ip_addresses=[], now=now or utcnow())

    check(good)
    with pytest.raises(VerifyError, match="private key does not match"):
        check(verify.Pair(certs.generate_key("ec-p256"), good.leaf, good.intermediates))
    with pytest.raises(VerifyError, match="does not lead to a trusted root"):
        check(_pair(other))
    with pytest.raises(VerifyError, match="is not valid at"):
        check(good, utcnow() + timedelta(days=2))
    with pytest.raises(VerifyError, match="lacks the configured name"):
        check(_pair(server, names=("other.example.internal",)))


# -- a deployment's run --------------------------------------------------------------------------------------
def test_enroll_then_up_to_date_then_forced_renewal(tmp_path):
    server = LocalServer()
    agent = deployer(tmp_path, server)
    first = run_once(agent)[0]
    assert (first.status, first.reported) == ("deployed", True) and server.calls == ["sign"]
    pair = agent_files.read_pair(agent.config.certificate["web"])
    assert pair.serial == first.serial
    key_text = (tmp_path / "tls" / "web.key").read_text()
    assert "PRIVATE KEY" in key_text  # made here, never sent
    again = run_once(agent)[0]
    assert again.status == "up-to-date" and server.calls == ["sign"]
    assert again.next_check == renew_time(pair.leaf, agent.config.certificate["web"])
    renewed = run_once(agent, force=True)[0]
    assert renewed.status == "deployed" and server.calls == ["sign", "renew"] and renewed.serial != first.serial
    assert (tmp_path / "tls" / "web.key").read_text() != key_text  # a new key on every renewal
    assert [r[2] for r in server.reports] == ["deployed", "deployed"]


def test_renews_inside_the_window(tmp_path):
    server = LocalServer()
    agent = deployer(tmp_path, server, extra='renew_before = "29d"')
    run_once(agent)
    assert run_once(agent)[0].status == "up-to-date"
    later = utcnow() + timedelta(days=2)
    agent.now = lambda: later
    assert run_once(agent)[0].status == "deployed" and server.calls == ["sign", "renew"]


def test_failed_reload_restores_the_previous_files_and_reloads_them(tmp_path):
    server = LocalServer()
    counter = tmp_path / "reloads"
    ok = [sys.executable, "-c", f"open({str(counter)!r}, 'a').write('x')"]
    run_once(deployer(tmp_path, server, ok))
    before = files_of(tmp_path)
    failing = [
        sys.executable,
        "-c",
        (f"import sys; open({str(counter)!r}, 'a').write('x'); sys.exit('nginx: [emerg] cannot load certificate')"),
    ]
    outcome = run_once(deployer(tmp_path, server, failing), force=True)[0]
    assert outcome.status == "rolled-back"
    assert "exited 1: nginx: [emerg] cannot load certificate; previous files restored" in outcome.message
    assert files_of(tmp_path) == before  # byte for byte
    assert counter.read_text() == "xxx"  # first deploy, failed reload, reload of the old
    assert server.reports[-1][2] == "rolled-back" and "cannot load certificate" in server.reports[-1][3]


def test_reload_timeout_is_a_failure(tmp_path):
    server = LocalServer()
    run_once(deployer(tmp_path, server))
    before = files_of(tmp_path)
    slow = deployer(
        tmp_path, server, [sys.executable, "-c", "import time; time.sleep(30)"], extra='reload_timeout = "1s"'
    )
    outcome = run_once(slow, force=True)[0]
    assert outcome.status == "rolled-back" and "did not finish within 1s" in outcome.message
    assert files_of(tmp_path) == before


def test_a_bad_new_pair_never_touches_the_files(tmp_path):
    server = LocalServer()
    run_once(deployer(tmp_path, server))
    before = files_of(tmp_path)
    server.validity = timedelta(seconds=0)  # already expired when it arrives
    outcome = run_once(deployer(tmp_path, server), force=True)[0]
    assert outcome.status == "failed" and "the new certificate is refused" in outcome.message
    assert "is not valid at" in outcome.message
    assert files_of(tmp_path) == before
    assert server.reports[-1][1:3] == (outcome.serial, "failed")


def test_unreachable_server_fails_with_retry_after_and_backoff_grows_with_jitter(tmp_path):
    server = LocalServer()
    server.down = True
    outcome = run_once(deployer(tmp_path, server))[0]
    assert (outcome.status, outcome.retry_after) == ("failed", 7) and "connection refused" in outcome.message
    assert not (tmp_path / "tls" / "web.key").exists()
    assert [backoff(n, 3600, rand=lambda: 1.0) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert backoff(1, 3600, rand=lambda: 0.0) == 5  # jitter: half to all of the step
    assert backoff(20, 600, rand=lambda: 1.0) == 600  # capped
    assert backoff(1, 3600, retry_after=30, rand=lambda: 0.0) == 30  # never before Retry-After


def test_revoked_or_refused_renewal_enrolls_anew(tmp_path):
    server = LocalServer()
    run_once(deployer(tmp_path, server))

    def refuse(name, csr):
        raise Refused("409 certificate 'web' is revoked", 409)

    server.renew = refuse  # type: ignore[method-assign]
    assert run_once(deployer(tmp_path, server), force=True)[0].status == "deployed"
    assert server.calls == ["sign", "sign"]


# -- the documented configs ---------------------------------------------------------------------------------
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("source", ["agent.md", "deploy/agent-container/agent.toml"])
def test_documented_configs_load(tmp_path, source):
    text = (DOCS / source).read_text()
    if source.endswith(".md"):
        text = text.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "root.pem").write_bytes(LocalServer().root.public_bytes(PEM))
    path = tmp_path / "agent.toml"
    path.write_text(text.replace("/etc/certsync/root.pem", str(tmp_path / "root.pem")))
    config = agent_config.load(path)
    assert config.certificate and all(spec.reload for spec in config.certificate.values())


def test_deploy_examples_are_well_formed():
    unit = (DOCS / "deploy" / "certsync-agent.service").read_text()
    assert "ExecStart=/opt/certsync/bin/certsync agent\n" in unit and "KillSignal=SIGTERM" in unit
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((DOCS / "deploy" / "agent-container" / "compose.yaml").read_text())
    agent = compose["services"]["agent"]
    assert agent["command"][0] == "agent" and agent["pid"] == "service:nginx" and agent["secrets"] == ["agent-token"]


def test_cli_once_with_the_server_down_exits_1_with_one_line_per_certificate(tmp_path):
    path = write_config(tmp_path, LocalServer())
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path.write_text(path.read_text().replace("https://pki.example.internal:8443", f"https://127.0.0.1:{port}"))
    result = subprocess.run(
        [sys.executable, "-m", "sync", "agent", "--once", "-q", "--agent-config", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "CERTSYNC_AGENT_TOKEN": "cst_secret-x"},
    )
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"web: failed: GET https://127.0.0.1:{port}/api/v1/certificates/web: "
    )
    assert "cst_secret-x" not in result.stderr
    assert not (tmp_path / "tls" / "web.key").exists()


def test_reload_command_does_not_inherit_the_token(tmp_path, monkeypatch):
    monkeypatch.setenv("CERTSYNC_AGENT_TOKEN", "cst_reload-must-not-see-this")
    seen = tmp_path / "env.json"
    dump = [sys.executable, "-c", f"import json, os; open({str(seen)!r}, 'w').write(json.dumps(dict(os.environ)))"]
    assert run_once(deployer(tmp_path, LocalServer(), dump))[0].status == "deployed"
    env = json.loads(seen.read_text())
    assert "CERTSYNC_AGENT_TOKEN" not in env and "cst_reload-must-not-see-this" not in env.values()
    assert env.get("PATH") == os.environ.get("PATH")  # the rest of the environment is passed on


def test_client_token_does_not_follow_a_redirect(tmp_path):
    import http.server
    import threading

    from sync.agent.client import Client

    seen: list[tuple[str, str | None]] = []

    class Redirecting(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(302 if self.path.startswith("/api/") else 200)
            self.send_header("Location", f"http://localhost:{self.server.server_address[1]}/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Client(f"http://127.0.0.1:{server.server_address[1]}", "cst_redirect-secret", ca_bundle=None)
        with pytest.raises(Refused) as err:
            client.exists("web")
    finally:
        server.shutdown()
        server.server_close()
    assert err.value.status == 302 and "cst_redirect-secret" not in err.value.message
    assert [path for path, _ in seen] == ["/api/v1/certificates/web"]  # nothing sent on to the redirect's target
