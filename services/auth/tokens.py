"""A bearer token (a JWT, e.g. a CI system's OIDC token) verified against the issuer's published keys: the
issuer's discovery document (``ISSUER/.well-known/openid-configuration``) names its JWKS; signature, issuer,
audience and expiry are checked by joserfc (Authlib's JOSE library), never by hand. Every HTTP call has a
timeout; a missing, expired, forged or misdirected token is PermissionDenied, an unreachable issuer
Unavailable."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import requests
from joserfc import jwt
from joserfc.errors import BadSignatureError, ExpiredTokenError, InvalidKeyIdError, JoseError, MissingClaimError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from services.errors import Invalid, PermissionDenied, Unavailable

SOURCE = "token"
WELL_KNOWN = "/.well-known/openid-configuration"
# Asymmetric signatures only: a shared-secret (HS*) or unsigned ("none") token proves nothing here.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
MAX_TOKEN_BYTES = 16_384


def issuer_of(metadata_url: str) -> str:
    """The issuer a discovery URL belongs to (``…/.well-known/openid-configuration`` removed)."""
    url = metadata_url.strip()
    return url[: -len(WELL_KNOWN)] if url.endswith(WELL_KNOWN) else url


def _when(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return repr(ts)


class TokenVerifier:
    """Verifies tokens of one issuer for one audience. Keys are fetched once and again only when a token
    names a key id they lack (the issuer rotated its keys)."""

    def __init__(self, issuer: str, audience: str, *, timeout: float = 10.0, leeway: int = 60,
                 session: requests.Session | None = None):
        if not issuer:
            raise Invalid("bearer tokens need the issuer: set MLOPS_OIDC_ISSUER (or server_metadata_url in the "
                          "[auth] section of .streamlit/secrets.toml)", source="settings")
        if not audience:
            raise Invalid("bearer tokens need the audience they must be issued for: set MLOPS_OIDC_AUDIENCE (or "
                          "client_id in the [auth] section of .streamlit/secrets.toml)", source="settings")
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.timeout = timeout
        self.leeway = leeway
        self.session = session or requests.Session()
        self._metadata: dict | None = None
        self._keys: KeySet | None = None

    def _get(self, url: str, what: str) -> dict:
        try:
            resp = self.session.get(url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise Unavailable(f"cannot fetch the issuer's {what} from {url}: {exc.__class__.__name__}",
                              source="identity provider", detail=str(exc)[:300]) from exc
        if resp.status_code != 200:
            raise Unavailable(f"the issuer's {what} at {url} answered HTTP {resp.status_code}",
                              source="identity provider")
        try:
            body = resp.json()
        except ValueError as exc:
            raise Unavailable(f"the issuer's {what} at {url} is not JSON", source="identity provider") from exc
        if not isinstance(body, dict):
            raise Unavailable(f"the issuer's {what} at {url} is not a JSON object", source="identity provider")
        return body

    def metadata(self) -> dict:
        if self._metadata is None:
            meta = self._get(self.issuer + WELL_KNOWN, "discovery document")
            if str(meta.get("issuer", "")).rstrip("/") != self.issuer:
                raise Unavailable(f"the discovery document at {self.issuer + WELL_KNOWN} names issuer "
                                  f"{meta.get('issuer')!r}, not {self.issuer!r}", source="identity provider")
            if not isinstance(meta.get("jwks_uri"), str):
                raise Unavailable("the issuer's discovery document names no jwks_uri", source="identity provider")
            self._metadata = meta
        return self._metadata

    def keys(self, *, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            jwks = self._get(self.metadata()["jwks_uri"], "signing keys (JWKS)")
            try:
                self._keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
            except (JoseError, KeyError, TypeError, ValueError) as exc:
                raise Unavailable(f"the issuer's signing keys cannot be read: {exc}",
                                  source="identity provider") from exc
        return self._keys

    def verify(self, token: str | None, now: datetime) -> dict:
        """The token's claims, once its signature, issuer, audience and expiry hold at ``now``."""
        token = re.sub(r"(?i)^bearer(\s+|$)", "", (token or "").strip())
        if not token:
            raise PermissionDenied(f"no token: set MLOPS_TOKEN to a bearer token from {self.issuer}", source=SOURCE)
        if len(token) > MAX_TOKEN_BYTES:
            raise PermissionDenied("the token is too long to be a bearer token", source=SOURCE)
        try:
            compact = extract_compact(token.encode())
            header = compact.headers()
            unverified = json.loads(compact.payload)
        except (JoseError, ValueError, TypeError, UnicodeDecodeError) as exc:
            raise PermissionDenied("the token is not a signed JWT", source=SOURCE) from exc
        claimed = unverified.get("sub") if isinstance(unverified, dict) else None
        who = f" (it claims subject {str(claimed)[:80]!r}, not verified)" if claimed else ""
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise PermissionDenied(f"the token's algorithm {alg!r} is not accepted{who}; accepted: "
                                   f"{', '.join(ALGORITHMS)}", source=SOURCE)
        keys = self.keys()
        kid = header.get("kid")
        if kid is not None and all(k.kid != kid for k in keys):
            keys = self.keys(refresh=True)
        try:
            verified = jwt.decode(token, keys, algorithms=[alg])
        except (BadSignatureError, InvalidKeyIdError) as exc:
            raise PermissionDenied(f"the token's signature does not verify against {self.issuer}'s published "
                                   f"keys: forged, or from another issuer{who}", source=SOURCE) from exc
        except JoseError as exc:
            raise PermissionDenied(f"the token cannot be verified ({exc.__class__.__name__}){who}",
                                   source=SOURCE) from exc
        claims = verified.claims
        who = f" (subject {str(claims.get('sub'))[:80]!r})" if claims.get("sub") else ""  # signed by the issuer
        issuer = self.metadata()["issuer"]  # exactly as the issuer writes it (a trailing slash included)
        registry = jwt.JWTClaimsRegistry(
            now=int(now.timestamp()), leeway=self.leeway, iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": self.audience}, sub={"essential": True}, exp={"essential": True})
        try:
            registry.validate(claims)
        except ExpiredTokenError as exc:
            raise PermissionDenied(f"the token expired at {_when(claims.get('exp'))}{who}", source=SOURCE) from exc
        except MissingClaimError as exc:
            raise PermissionDenied(f"the token lacks the {exc.claim!r} claim{who}", source=SOURCE) from exc
        except JoseError as exc:
            claim = getattr(exc, "claim", "")
            said = {"aud": f"is for audience {claims.get('aud')!r}, not {self.audience!r}",
                    "iss": f"was issued by {claims.get('iss')!r}, not {issuer!r}",
                    "nbf": f"is not valid before {_when(claims.get('nbf'))}",
                    "iat": f"was issued in the future ({_when(claims.get('iat'))})"}.get(claim, f"is invalid: {exc}")
            raise PermissionDenied(f"the token {said}{who}", source=SOURCE) from exc
        return dict(claims)
