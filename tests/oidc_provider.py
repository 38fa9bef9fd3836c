"""A real OpenID Connect provider for the tests: oidc-provider-mock (PyPI) in its own process on a free port.

People are registered with their claims (``PUT /users/SUB``); ID tokens come from a real authorization-code
flow (the provider's form posted with the subject, the code exchanged at its token endpoint), signed by the
provider's own key. A forged token carries the same claims and the provider's key id, signed by another key."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import requests

from tests.conftest import free_port, wait_for
from tests.processes import stop_process

WELL_KNOWN = "/.well-known/openid-configuration"
CLIENT_ID = "mlops-console"
REDIRECT = "http://127.0.0.1:9/oauth2callback"  # never called: the code is read from the redirect itself


class OidcProvider:
    def __init__(self, base: str):
        self.base = base

    @property
    def metadata(self) -> dict:
        return requests.get(self.base + WELL_KNOWN, timeout=10).json()

    def add_user(self, sub: str, **claims) -> None:
        resp = requests.put(f"{self.base}/users/{quote(sub, safe='')}", json=claims, timeout=10)
        assert resp.status_code == 204, resp.text

    def id_token(self, sub: str, *, client_id: str = CLIENT_ID) -> str:
        """An ID token for ``sub`` (registered before, with its claims) issued to ``client_id``."""
        meta = self.metadata
        auth = requests.post(meta["authorization_endpoint"], data={"sub": sub}, allow_redirects=False, timeout=10,
                             params={"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
                                     "scope": "openid profile email", "state": "tests"})
        assert auth.status_code == 302, auth.text
        code = parse_qs(urlsplit(auth.headers["location"]).query)["code"][0]
        token = requests.post(meta["token_endpoint"], timeout=10,
                              data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                    "client_id": client_id, "client_secret": "tests"})
        assert token.status_code == 200, token.text
        return token.json()["id_token"]

    def forge(self, sub: str, **claims) -> str:
        """What an attacker can make: valid-looking claims for this issuer and audience, under the provider's
        key id, signed with a key of their own."""
        from joserfc import jwt
        from joserfc.jwk import RSAKey

        kid = requests.get(self.metadata["jwks_uri"], timeout=10).json()["keys"][0].get("kid")
        now = int(time.time())
        body = {"iss": self.base, "aud": [CLIENT_ID], "sub": sub, "iat": now, "exp": now + 3600, **claims}
        return jwt.encode({"alg": "RS256", "kid": kid}, body, RSAKey.generate_key(2048))


@contextmanager
def oidc_provider(log_path: Path):
    """Run the provider until the block ends; its log is kept at ``log_path``."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port",
                                 str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        def ready():
            assert proc.poll() is None, f"the provider exited with {proc.returncode}:\n{log_path.read_text()}"
            return requests.get(base + WELL_KNOWN, timeout=2).ok

        wait_for("the OIDC provider to answer", ready, timeout=60)
        yield OidcProvider(base)
    finally:
        stop_process(proc, timeout=10)
