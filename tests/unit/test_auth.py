"""services/auth: role maps, claims → actor, the proxy's headers and who may send them, bearer-token
verification (real joserfc signatures against keys served by a stand-in for the issuer's HTTP endpoints; the
real provider is in tests/integration/test_cli_tokens.py), and the command line's actor."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from types import SimpleNamespace

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from services.auth.claims import principal_from_claims, session_too_old
from services.auth.cli import claimed_name, cli_actor
from services.auth.config import auth_section_problems, provider_host
from services.auth.proxy import ProxyHeaders, is_trusted, parse_trusted_proxies, principal_from_headers
from services.auth.roles import claim_at, groups_from, parse_role_map, roles_for
from services.auth.tokens import TokenVerifier, issuer_of
from services.errors import Invalid, PermissionDenied, Unavailable
from services.identity import Directory

ROLE_MAP = parse_role_map("ml-approvers=approver,ml-ops=operator+requester,ml-admins=admin")
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ISSUER = "https://id.example/realms/ml"
AUDIENCE = "mlops-console"


# --------------------------------------------------------------------------- role map and groups

def test_role_map_keeps_roles_in_order_and_allows_equals_in_group_names():
    m = parse_role_map(" cn=ml-ops = requester+operator+requester , /ml/approvers=approver ")
    assert m == {"cn=ml-ops": ("requester", "operator"), "/ml/approvers": ("approver",)}


@pytest.mark.parametrize("text,word", [("", "empty"), ("ops", "GROUP=ROLE"), ("ops=", "GROUP=ROLE"),
                                       ("ops=root", "unknown role 'root'"), ("a=viewer,a=admin", "twice"),
                                       ("ops=operator+", None)])
def test_role_map_bad_input(text, word):
    if word is None:  # a trailing "+" is harmless: the roles that are there count
        assert parse_role_map(text) == {"ops": ("operator",)}
        return
    with pytest.raises(Invalid, match=word) as e:
        parse_role_map(text)
    assert e.value.source == "settings" and "MLOPS_OIDC_ROLE_MAP" in e.value.message


def test_groups_from_lists_strings_and_nonsense():
    assert groups_from(["ml-ops", " ml-ops ", "", 7, None, "x"]) == ("ml-ops", "x")
    assert groups_from("ml-ops, ml-approvers,,") == ("ml-ops", "ml-approvers")
    assert groups_from({"ml-ops": True}) == () and groups_from(None) == () and groups_from(42) == ()


def test_claim_at_reaches_nested_claims():
    claims = {"realm_access": {"roles": ["ml-ops"]}, "a.b": "flat wins"}
    assert claim_at(claims, "realm_access.roles") == ["ml-ops"]
    assert claim_at(claims, "a.b") == "flat wins" and claim_at(claims, "realm_access.missing") is None


def test_roles_for_unions_groups_and_defaults():
    assert roles_for(["ml-ops", "ml-approvers", "other"], ROLE_MAP) == (("requester", "operator", "approver"), True)
    assert roles_for(["other"], ROLE_MAP) == (("viewer",), False)
    assert roles_for([], ROLE_MAP, "none") == ((), False)


# --------------------------------------------------------------------------- claims → actor

def test_claims_make_an_actor_whose_subject_is_sub():
    p = principal_from_claims({"sub": "00u1f", "name": "Olga Ops", "email": "olga@example.com",
                               "groups": ["ml-ops"]}, roles_claim="groups", role_map=ROLE_MAP)
    assert p.actor.subject == "00u1f" and p.actor.name == "Olga Ops" and p.email == "olga@example.com"
    assert p.actor.roles == ("requester", "operator") and p.actor.authenticated_by == "oidc" and p.mapped
    assert p.actor.has_any(("operator",)) and not p.actor.has_any(("approver",))


def test_claims_without_mapped_groups_are_a_viewer_or_nobody():
    claims = {"sub": "v1", "preferred_username": "vera", "groups": "marketing"}
    p = principal_from_claims(claims, roles_claim="groups", role_map=ROLE_MAP)
    assert p.actor.roles == ("viewer",) and p.actor.name == "vera" and not p.mapped and p.may_enter
    none = principal_from_claims(claims, roles_claim="groups", role_map=ROLE_MAP, default_role="none")
    assert none.actor.roles == () and not none.may_enter


@pytest.mark.parametrize("claims", [{}, {"sub": ""}, {"sub": "  "}, {"sub": 42}, {"name": "no subject"}])
def test_claims_without_a_subject_are_refused(claims):
    with pytest.raises(PermissionDenied, match="no subject"):
        principal_from_claims(claims, roles_claim="groups", role_map=ROLE_MAP)


def test_claims_name_falls_back_to_email_then_subject():
    assert principal_from_claims({"sub": "s", "email": "e@x"}, roles_claim="groups", role_map={}).actor.name == "e@x"
    assert principal_from_claims({"sub": "s"}, roles_claim="groups", role_map={}).actor.name == "s"


def test_a_browser_sign_in_is_renewed_after_the_session_hours():
    iat = int(NOW.timestamp())
    assert session_too_old({"iat": iat}, NOW + timedelta(hours=11, minutes=59), 12) is None
    assert "sign in again" in session_too_old({"iat": iat}, NOW + timedelta(hours=12, seconds=1), 12)
    assert session_too_old({"auth_time": iat, "iat": iat + 7200}, NOW + timedelta(hours=13), 12), "auth_time first"
    assert "does not say" in session_too_old({"sub": "x"}, NOW, 12)


# --------------------------------------------------------------------------- proxy

TRUSTED = parse_trusted_proxies("10.0.0.0/8, 127.0.0.1, fd00::/8")
NAMES = ProxyHeaders()


def proxied(headers, peer="10.1.2.3", **kw):
    return principal_from_headers({k: v if isinstance(v, list) else [v] for k, v in headers.items()}, peer,
                                  trusted=TRUSTED, names=kw.pop("names", NAMES), role_map=ROLE_MAP, **kw)


def test_trusted_proxy_addresses():
    assert TRUSTED == (ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32"), ip_network("fd00::/8"))
    assert is_trusted("10.200.0.1", TRUSTED) and is_trusted("127.0.0.1", TRUSTED) and is_trusted("fd00::1", TRUSTED)
    assert is_trusted("::ffff:10.0.0.9", TRUSTED), "an IPv4-mapped IPv6 peer is its IPv4 address"
    assert is_trusted("fd00::1%eth0", TRUSTED), "a zone id is not part of the address"
    for peer in ("11.0.0.1", "127.0.0.2", "::1", "fe80::1", "", None, "proxy.internal", "10.0.0.1:443"):
        assert not is_trusted(peer, TRUSTED), peer


def test_proxy_headers_make_an_actor():
    p = proxied({"x-forwarded-user": "u-123", "X-Forwarded-Email": "olga@example.com",
                 "X-Forwarded-Groups": "ml-ops,ml-approvers", "X-Forwarded-Preferred-Username": "olga"})
    assert (p.actor.subject, p.actor.name, p.email) == ("u-123", "olga", "olga@example.com")
    assert p.actor.roles == ("requester", "operator", "approver") and p.actor.authenticated_by == "proxy"
    bare = proxied({"X-Forwarded-User": "u-9"})
    assert bare.actor.name == "u-9" and bare.actor.roles == ("viewer",) and not bare.mapped


def test_proxy_header_names_are_configurable():
    names = ProxyHeaders(user="X-Auth-Request-User", groups="X-Auth-Request-Groups")
    p = proxied({"X-Auth-Request-User": "u", "X-Auth-Request-Groups": "ml-admins", "X-Forwarded-User": "evil"},
                names=names)
    assert p.actor.subject == "u" and p.actor.roles == ("admin",)


@pytest.mark.parametrize("headers,peer,word", [
    ({"X-Forwarded-User": "alice"}, "203.0.113.9", "connections from 203.0.113.9 are not accepted"),
    ({"X-Forwarded-User": "alice"}, None, "cannot tell which address"),
    ({"X-Forwarded-User": "alice"}, "not-an-ip", "not accepted"),
    ({}, "10.0.0.1", "no X-Forwarded-User header"),
    ({"X-Forwarded-User": "   "}, "10.0.0.1", "no X-Forwarded-User header"),
    ({"X-Forwarded-User": ["alice", "bob"]}, "10.0.0.1", "sent 2 times"),
    ({"X-Forwarded-User": "alice\r\nX-Evil: 1"}, "10.0.0.1", "control characters"),
])
def test_proxy_refusals(headers, peer, word):
    with pytest.raises(PermissionDenied, match=word) as e:
        proxied(headers, peer)
    assert e.value.source == "authenticating proxy"


# --------------------------------------------------------------------------- tokens

class Issuer:
    """The issuer's two HTTP endpoints (discovery, JWKS) as a requests-like session, and its signing key."""

    def __init__(self, issuer=ISSUER):
        self.issuer = issuer
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.calls: list[str] = []
        self.down = False

    def jwks(self):
        return KeySet([self.key]).as_dict(private=False)

    def get(self, url, timeout=None):
        assert timeout, "every call to the issuer has a timeout"
        self.calls.append(url)
        if self.down:
            import requests

            raise requests.ConnectionError("refused")
        body = ({"issuer": self.issuer, "jwks_uri": self.issuer + "/certs"}
                if url.endswith("/.well-known/openid-configuration") else self.jwks())
        return SimpleNamespace(status_code=200, json=lambda: json.loads(json.dumps(body)))

    def token(self, key=None, header=None, **claims):
        body = {"iss": self.issuer, "aud": AUDIENCE, "sub": "ci-bot", "iat": int(NOW.timestamp()),
                "exp": int((NOW + timedelta(hours=1)).timestamp()), "groups": ["ml-ops"], **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode({"alg": "RS256", "kid": "k1", **(header or {})}, body, key or self.key)


@pytest.fixture
def issuer():
    return Issuer()


def verifier(issuer, audience=AUDIENCE, **kw):
    return TokenVerifier(issuer.issuer, audience, session=issuer, timeout=3, **kw)


def test_a_valid_token_gives_its_claims(issuer):
    claims = verifier(issuer).verify(issuer.token(), NOW)
    assert claims["sub"] == "ci-bot" and claims["groups"] == ["ml-ops"]
    assert verifier(issuer).verify("Bearer " + issuer.token(aud=["other", AUDIENCE]), NOW)["sub"] == "ci-bot"


def test_expired_tokens_are_refused_after_the_leeway(issuer):
    token = issuer.token()
    v = verifier(issuer, leeway=60)
    assert v.verify(token, NOW + timedelta(hours=1, seconds=59))
    with pytest.raises(PermissionDenied, match=r"expired at 2026-11-27 13:00:00 UTC \(subject 'ci-bot'\)"):
        v.verify(token, NOW + timedelta(hours=1, seconds=61))


@pytest.mark.parametrize("claims,word", [
    ({"aud": "another-app"}, "is for audience 'another-app', not 'mlops-console'"),
    ({"iss": "https://evil.example"}, "was issued by 'https://evil.example'"),
    ({"exp": None}, "lacks the 'exp' claim"),
    ({"sub": None}, "lacks the 'sub' claim"),
    ({"nbf": int((NOW + timedelta(hours=1)).timestamp())}, "is not valid before"),
    ({"iat": int((NOW + timedelta(hours=1)).timestamp())}, "issued in the future"),
])
def test_misdirected_tokens_are_refused(issuer, claims, word):
    with pytest.raises(PermissionDenied, match=word):
        verifier(issuer).verify(issuer.token(**claims), NOW)


def test_forged_tokens_are_refused(issuer):
    other = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    with pytest.raises(PermissionDenied, match=r"forged.*claims subject 'bob', not verified") as e:
        verifier(issuer).verify(issuer.token(key=other, sub="bob"), NOW)
    assert e.value.source == "token"
    good = issuer.token()
    head, body, sig = good.split(".")
    import base64

    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["groups"] = ["ml-admins"]  # a changed payload under the issuer's own signature
    tampered = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(PermissionDenied, match="does not verify"):
        verifier(issuer).verify(f"{head}.{tampered}.{sig}", NOW)


@pytest.mark.parametrize("make,word", [
    (lambda i: "", "no token: set MLOPS_TOKEN"),
    (lambda i: None, "no token"),
    (lambda i: "Bearer ", "no token"),
    (lambda i: "not.a.jwt", "not a signed JWT"),
    (lambda i: "x" * 20_000, "too long"),
    (lambda i: ".".join(i.token().split(".")[:2]), "not a signed JWT"),
    (lambda i: i.token()[:-8] + "AAAAAAAA", "does not verify"),
])
def test_missing_and_malformed_tokens_are_refused(issuer, make, word):
    with pytest.raises(PermissionDenied, match=word):
        verifier(issuer).verify(make(issuer), NOW)


def test_shared_secret_and_unsigned_tokens_are_refused(issuer):
    from joserfc.jwk import OctKey

    hs = jwt.encode({"alg": "HS256"}, {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": 2**31},
                    OctKey.generate_key(256))
    with pytest.raises(PermissionDenied, match="algorithm 'HS256' is not accepted"):
        verifier(issuer).verify(hs, NOW)
    head = "eyJhbGciOiJub25lIn0"  # {"alg":"none"}
    body = issuer.token().split(".")[1]
    with pytest.raises(PermissionDenied, match="algorithm 'none' is not accepted"):
        verifier(issuer).verify(f"{head}.{body}.", NOW)


def test_keys_are_fetched_once_and_again_on_an_unknown_key_id(issuer):
    v = verifier(issuer)
    v.verify(issuer.token(), NOW)
    v.verify(issuer.token(), NOW)
    assert len(issuer.calls) == 2, issuer.calls  # discovery + JWKS, once
    issuer.key = RSAKey.generate_key(2048, parameters={"kid": "k2"})  # the issuer rotated its key
    assert v.verify(issuer.token(header={"kid": "k2"}), NOW)["sub"] == "ci-bot"
    assert issuer.calls[-1].endswith("/certs") and len(issuer.calls) == 3


def test_an_unreachable_or_inconsistent_issuer_is_unavailable(issuer):
    issuer.down = True
    with pytest.raises(Unavailable, match="cannot fetch the issuer's discovery document") as e:
        verifier(issuer).verify(issuer.token(), NOW)
    assert e.value.source == "identity provider"
    issuer.down = False
    liar = Issuer("https://evil.example")
    with pytest.raises(Unavailable, match="names issuer 'https://evil.example'"):
        TokenVerifier(ISSUER, AUDIENCE, session=liar).verify(liar.token(), NOW)


def test_a_verifier_needs_issuer_and_audience():
    with pytest.raises(Invalid, match="MLOPS_OIDC_ISSUER"):
        TokenVerifier("", AUDIENCE)
    with pytest.raises(Invalid, match="MLOPS_OIDC_AUDIENCE"):
        TokenVerifier(ISSUER, "")
    assert issuer_of(ISSUER + "/.well-known/openid-configuration") == ISSUER


# --------------------------------------------------------------------------- the command line's actor

def container(mode, issuer=None, **settings):
    s = SimpleNamespace(auth_mode=mode, oidc_roles_claim="groups", role_map=ROLE_MAP, default_role="viewer",
                        **settings)
    return SimpleNamespace(settings=s, directory=Directory({"alice": ("operator",)}), clock=lambda: NOW,
                           token_verifier=verifier(issuer) if issuer else None)


def test_cli_actor_in_dev_mode_is_a_configured_identity():
    c = container("dev")
    assert cli_actor(c, "alice", {}).roles == ("operator",)
    assert cli_actor(c, None, {"MLOPS_ACTOR": "alice"}).subject == "alice"
    with pytest.raises(Invalid, match="--as NAME"):
        cli_actor(c, None, {})
    with pytest.raises(PermissionDenied, match="unknown identity"):
        cli_actor(c, "mallory", {})
    assert claimed_name(c.settings, "mallory", {}) == "mallory" and claimed_name(c.settings, None, {}) == "(nobody)"


def test_cli_actor_with_a_token_is_its_subject(issuer, tmp_path):
    c = container("oidc", issuer)
    a = cli_actor(c, None, {"MLOPS_TOKEN": issuer.token(name="CI bot")})
    assert (a.subject, a.name, a.roles, a.authenticated_by) == ("ci-bot", "CI bot", ("requester", "operator"),
                                                                "token")
    (tmp_path / "token").write_text(issuer.token(sub="from-file") + "\n")
    assert cli_actor(c, None, {"MLOPS_TOKEN_FILE": str(tmp_path / "token")}).subject == "from-file"
    with pytest.raises(PermissionDenied, match="cannot read MLOPS_TOKEN_FILE"):
        cli_actor(c, None, {"MLOPS_TOKEN_FILE": str(tmp_path / "missing")})
    assert claimed_name(c.settings, None, {"MLOPS_TOKEN": "x"}) == "(unverified token)"
    assert claimed_name(c.settings, None, {}) == "(no token)"


def test_cli_actor_refuses_as_and_actor_outside_dev_mode(issuer):
    c = container("oidc", issuer)
    token = {"MLOPS_TOKEN": issuer.token()}
    with pytest.raises(PermissionDenied, match="--as is not accepted with MLOPS_AUTH_MODE=oidc"):
        cli_actor(c, "alice", token)
    with pytest.raises(PermissionDenied, match="MLOPS_ACTOR is not accepted"):
        cli_actor(c, None, {**token, "MLOPS_ACTOR": "alice"})
    with pytest.raises(PermissionDenied, match="no token"):
        cli_actor(c, None, {})


# --------------------------------------------------------------------------- Streamlit's [auth] section

def test_auth_section_problems():
    good = {"redirect_uri": "https://console.example/oauth2callback", "cookie_secret": "s" * 40, "client_id": "c",
            "client_secret": "x", "server_metadata_url": ISSUER + "/.well-known/openid-configuration"}
    assert auth_section_problems(good) == [] and provider_host(good) == "id.example"
    assert "needs an [auth] section" in auth_section_problems(None)[0]
    bad = auth_section_problems({**good, "client_id": "", "redirect_uri": "https://console.example/",
                                 "cookie_secret": "short", "server_metadata_url": "id.example/x"})
    assert any("client_id is missing" in p for p in bad) and any("/oauth2callback" in p for p in bad)
    assert any("cookie_secret is too short" in p for p in bad) and any("absolute http(s) URL" in p for p in bad)
