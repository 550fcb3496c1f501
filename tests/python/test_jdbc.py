"""The Arrow Flight SQL JDBC driver (org.apache.arrow:flight-sql-jdbc-driver, the
jar DBeaver, DataGrip and Tableau load) against Weir, without and with users.

The checks are Java programs in tests/jdbc/ (installed and run by
tests/scripts/jdbc.sh; needs Java 17+ and mvn):

* WeirJdbcSmoke: what a BI tool does at connect time (database metadata),
  queries, DML, prepared statements, sessions, errors, cancellation.
* WeirJdbcWriteOnce: every statement that changes data (INSERT, CTAS, COPY,
  REFRESH MATERIALIZED VIEW) takes effect exactly once through every JDBC call
  pattern (issue 18, item 0 for JDBC).

`test_smoke_tls` runs WeirJdbcSmoke over TLS (a server with --tls-cert/--tls-key
and users): the driver trusts the test CA through `tlsRootCerts` (a PEM file)
or through `trustStore` (a PKCS12 store made with keytool); a wrong CA fails
to connect with an SQLException.

Each prints one line per check: OK, FAILED, or GAP (a known gap of the
driver, not of Weir: not a failure). A test fails with the program's output
when a check fails."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tls_certs import make_server_certs, other_ca_pem
from weir_harness import REPO_ROOT, WeirServer, hash_password

JDBC_SH = REPO_ROOT / "tests" / "scripts" / "jdbc.sh"
PASSWORD = "jdbc-secret"
SUMMARY_RE = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) known driver gaps", re.M)
# The driver's known gaps (18.3.0), as the programs name them.
KNOWN_GAPS = (
    "metadata.getTypeInfo",  # never sends CommandGetXdbcTypeInfo: always empty
    "Statement addBatch/executeBatch",  # NullPointerException, nothing runs
    "session: Connection.close with catalog=weir",  # closes twice: "Channel shutdown invoked"
)


def jdbc_sh(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(JDBC_SH), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def driver():
    """The driver jar and the compiled programs (fast when cached)."""
    out = jdbc_sh("install")
    if out.returncode != 0:
        pytest.fail(f"tests/scripts/jdbc.sh install failed:\n{out.stdout}", pytrace=False)
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module", params=["anonymous", "users"])
def server(request, tmp_path_factory, driver):
    """A server with an export dir (COPY); "users": with users boss (admin)
    and reader (read), so every JDBC call authenticates as boss."""
    root = tmp_path_factory.mktemp(f"jdbc-{request.param}")
    export = root / "exports"
    export.mkdir()
    args = ["--export-dir", str(export)]
    credentials: list[str] = []
    if request.param == "users":
        h = hash_password(PASSWORD)
        args += ["--users", f"boss:admin:{h};reader:read:{h}"]
        credentials = ["boss", PASSWORD]
    srv = WeirServer(root / "data", args)
    srv.export_dir = export
    srv.jdbc_url = f"jdbc:arrow-flight-sql://127.0.0.1:{srv.port}?useEncryption=false"
    srv.credentials = credentials
    yield srv
    srv.discard()


def run_checks(program: str, srv: WeirServer, env: dict | None = None) -> str:
    out = jdbc_sh(program, srv.jdbc_url, *srv.credentials, env=env)
    summary = SUMMARY_RE.search(out.stdout)
    if out.returncode != 0 or summary is None or summary.group(2) != "0":
        failed = [line for line in out.stdout.splitlines() if line.startswith("FAILED")]
        pytest.fail(
            f"jdbc.sh {program} (exit {out.returncode}): {len(failed)} failed check(s)\n"
            + "\n".join(failed)
            + f"\n--- full output\n{out.stdout}",
            pytrace=False,
        )
    # A GAP line names its check: "GAP    <check>: known driver gap: ...".
    unknown = [
        line
        for line in out.stdout.splitlines()
        if line.startswith("GAP") and not any(f"{gap}: known driver gap" in line for gap in KNOWN_GAPS)
    ]
    assert not unknown, "gaps not known for the driver:\n" + "\n".join(unknown) + f"\n--- full output\n{out.stdout}"
    return out.stdout


def test_smoke(server):
    out = run_checks("smoke", server)
    assert "OK     connect: Arrow Flight SQL JDBC Driver" in out
    assert "OK     session: SET lasts across statements of the connection" in out


def test_write_once(server):
    out = run_checks("write-once", server, env={"WEIR_JDBC_EXPORT_DIR": str(server.export_dir)})
    kinds = ("INSERT VALUES", "INSERT SELECT", "CTAS", "REFRESH MATERIALIZED VIEW", "COPY")
    patterns = (
        "Statement.execute",
        "Statement.executeUpdate",
        "Statement.executeQuery, result ignored",
        "Statement.execute + close without reading",
        "PreparedStatement executeUpdate (parameters)",
        "PreparedStatement addBatch/executeBatch",
    )
    # Every case ran and passed (the Statement batch: a known gap, checked to change nothing).
    for kind in kinds:
        for pattern in patterns:
            assert f"OK     {kind} via {pattern}:" in out, f"{kind} via {pattern} did not pass:\n{out}"
        assert re.search(rf"^(OK|GAP)    {re.escape(kind)} via Statement addBatch/executeBatch:", out, re.M), out


# --- TLS ---------------------------------------------------------------------------------

TRUST_STORE_PASSWORD = "weir-trust"


def trust_store(pem: Path, store: Path) -> Path:
    """A PKCS12 trust store holding the CA certificate `pem` (keytool -importcert)."""
    out = subprocess.run(
        ["keytool", "-importcert", "-noprompt", "-alias", "weir-test-ca", "-file", str(pem),
         "-keystore", str(store), "-storetype", "PKCS12", "-storepass", TRUST_STORE_PASSWORD],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return store


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, driver):
    """TLS (a certificate for 127.0.0.1 signed by a test CA) and users boss and
    reader; `ca` is the CA's PEM file, `wrong_ca` another CA's."""
    root = tmp_path_factory.mktemp("jdbc-tls")
    certs = make_server_certs(root / "certs")
    h = hash_password(PASSWORD)
    srv = WeirServer(
        root / "data",
        ["--tls-cert", str(certs.cert_path), "--tls-key", str(certs.key_path),
         "--users", f"boss:admin:{h};reader:read:{h}"],
    )
    srv.ca = root / "ca.pem"
    srv.ca.write_text(certs.ca_pem)
    srv.wrong_ca = root / "wrong-ca.pem"
    srv.wrong_ca.write_text(other_ca_pem())
    srv.base_url = f"jdbc:arrow-flight-sql://127.0.0.1:{srv.port}?useEncryption=true"
    srv.credentials = ["boss", PASSWORD]
    yield srv
    srv.discard()


def tls_url(srv: WeirServer, how: str, ca: Path) -> str:
    if how == "tlsRootCerts":
        return f"{srv.base_url}&useSystemTrustStore=false&tlsRootCerts={ca}"
    store = trust_store(ca, ca.with_suffix(f".{time.monotonic_ns()}.p12"))
    return (f"{srv.base_url}&useSystemTrustStore=false&trustStore={store}"
            f"&trustStorePassword={TRUST_STORE_PASSWORD}")


@pytest.mark.parametrize("how", ["tlsRootCerts", "trustStore"])
def test_smoke_tls(tls_server, how):
    tls_server.jdbc_url = tls_url(tls_server, how, tls_server.ca)
    out = run_checks("smoke", tls_server)
    assert "OK     connect: Arrow Flight SQL JDBC Driver" in out
    assert "OK     session: SET lasts across statements of the connection" in out
    assert "OK     executeUpdate INSERT (count 2, rows landed)" in out


@pytest.mark.parametrize("how", ["tlsRootCerts", "trustStore"])
def test_tls_wrong_ca_fails_to_connect(tls_server, how):
    url = tls_url(tls_server, how, tls_server.wrong_ca)
    out = jdbc_sh("smoke", url, *tls_server.credentials)
    # The first check (connect) fails with an SQLException and the program stops there.
    assert out.returncode == 1, out.stdout
    failed = [line for line in out.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and failed[0].startswith("FAILED connect: java.sql.SQLException"), out.stdout
    assert "0 passed, 1 failed" in out.stdout, out.stdout
    # Refused by the TLS handshake (the certificate path), before authentication.
    assert "SSLHandshakeException" in failed[0] and "certification path" in failed[0], failed[0]
    assert "UNAUTHENTICATED" not in failed[0], failed[0]


def test_tls_right_ca_wrong_password_is_unauthenticated(tls_server):
    out = jdbc_sh("smoke", tls_url(tls_server, "tlsRootCerts", tls_server.ca), "boss", "not-the-password")
    assert out.returncode == 1, out.stdout
    failed = [line for line in out.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and failed[0].startswith("FAILED connect: java.sql.SQLException"), out.stdout
    assert "UNAUTHENTICATED" in failed[0] and "SSLHandshakeException" not in failed[0], failed[0]
