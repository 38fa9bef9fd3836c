import pytest

from services.actions import parse_reason, parse_version, parse_weight
from services.errors import Invalid
from services.history import parse_compare
from services.registry.mlflow_registry import name_filter
from services.settings import Settings, parse_identities


@pytest.mark.parametrize("value,expected", [(0, 0), (100, 100), ("35", 35), (" 7 ", 7), (50.0, 50)])
def test_weights_accepted(value, expected):
    assert parse_weight(value) == expected


@pytest.mark.parametrize("value", [-1, 101, 12.5, "12.5", "x", "", None, True, False, [], "1e2", "٣", "--5", "+5",
                                   "5 5"])
def test_weights_refused(value):
    with pytest.raises(Invalid):
        parse_weight(value)


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "v", "", None, "²"])
def test_versions_refused(value):
    with pytest.raises(Invalid):
        parse_version(value)


def test_version_normalised():
    assert parse_version(" 007 ") == "7"


def test_reason():
    assert parse_reason("  why  ") == "why"
    for bad in ("", "   ", None, 5, "x" * 2001):
        with pytest.raises(Invalid):
            parse_reason(bad)


def test_compare_parsing():
    assert parse_compare("3, v5,3") == ["3", "5"]
    assert parse_compare(None) == []
    for bad in ("3,x", "1;2", "0,1", ",".join(str(i) for i in range(1, 11))):
        with pytest.raises(Invalid):
            parse_compare(bad)


@pytest.mark.parametrize("name,expected", [
    ("plain", "name = 'plain'"),
    ("it's", 'name = "it\'s"'),
    ('say "hi"', "name = 'say \"hi\"'"),
    ("50%_off", "name = '50%_off'"),
    ("both ' and \"", None),
])
def test_name_filter_never_widens(name, expected):
    assert name_filter(name) == expected


def test_settings_defaults_and_errors(tmp_path):
    s = Settings.from_env({"MLOPS_DATA_DIR": str(tmp_path)}, secrets_path=tmp_path / "none.toml")
    assert s.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert s.database_url == f"sqlite:///{tmp_path / 'console.db'}"
    assert s.serving_backend == "local" and s.registry_is_local
    assert s.identities["bob"] == ("approver",)
    for env, word in [({"MLOPS_SERVING_BACKEND": "docker"}, "MLOPS_SERVING_BACKEND"),
                      ({"MLOPS_DATABASE_URL": "mysql://x"}, "MLOPS_DATABASE_URL"),
                      ({"MLOPS_APPROVAL_TTL_MINUTES": "soon"}, "MLOPS_APPROVAL_TTL_MINUTES"),
                      ({"MLOPS_APPROVAL_TTL_MINUTES": "0"}, "between"),
                      ({"MLOPS_DEV_IDENTITIES": "alice"}, "NAME=ROLE")]:
        with pytest.raises(Invalid, match=word):
            Settings.from_env({"MLOPS_DATA_DIR": str(tmp_path), **env}, secrets_path=tmp_path / "none.toml")


def test_secrets_file_is_read_and_env_wins(tmp_path):
    sec = tmp_path / "secrets.toml"
    sec.write_text('MLOPS_SERVING_BACKEND = "kserve"\n[mlops]\nMLOPS_MLFLOW_UI_URL = "http://ui/"\n')
    s = Settings.from_env({"MLOPS_DATA_DIR": str(tmp_path)}, secrets_path=sec)
    assert s.serving_backend == "kserve" and s.mlflow_ui_url == "http://ui"
    s2 = Settings.from_env({"MLOPS_DATA_DIR": str(tmp_path), "MLOPS_SERVING_BACKEND": "local"}, secrets_path=sec)
    assert s2.serving_backend == "local"
    assert not Settings.from_env({"MLFLOW_TRACKING_URI": "http://h:5000"}, secrets_path=sec).registry_is_local


def _auth(tmp_path, secrets=None, for_people=False, **env):
    return Settings.from_env({"MLOPS_DATA_DIR": str(tmp_path), **env}, secrets_path=secrets or tmp_path / "none.toml",
                             for_people=for_people)


ROLE_MAP = "ml-approvers=approver, ml-ops=operator+requester"


def test_oidc_and_proxy_modes_are_read_with_what_they_need(tmp_path):
    s = _auth(tmp_path, MLOPS_AUTH_MODE="OIDC", MLOPS_OIDC_ROLE_MAP=ROLE_MAP, MLOPS_OIDC_ISSUER="https://id.example/",
              MLOPS_OIDC_AUDIENCE="mlops-console", MLOPS_OIDC_ROLES_CLAIM="realm_access.roles")
    assert (s.auth_mode, s.oidc_issuer, s.oidc_audience, s.oidc_roles_claim) == (
        "oidc", "https://id.example/", "mlops-console", "realm_access.roles")
    assert s.role_map == {"ml-approvers": ("approver",), "ml-ops": ("operator", "requester")}
    assert (s.default_role, s.oidc_session_hours, s.oidc_timeout_seconds) == ("viewer", 12, 10)
    p = _auth(tmp_path, MLOPS_AUTH_MODE="proxy", MLOPS_OIDC_ROLE_MAP=ROLE_MAP,
              MLOPS_TRUSTED_PROXIES="10.0.0.0/8, 192.168.1.7", MLOPS_PROXY_GROUPS_HEADER="X-Auth-Request-Groups")
    assert p.trusted_proxies == ("10.0.0.0/8", "192.168.1.7/32") and p.proxy_groups_header == "X-Auth-Request-Groups"
    assert p.proxy_user_header == "X-Forwarded-User"


def test_the_cli_token_defaults_come_from_streamlits_auth_section(tmp_path):
    sec = tmp_path / "secrets.toml"
    sec.write_text('[auth]\nredirect_uri = "https://console.example/oauth2callback"\ncookie_secret = "x"\n'
                   'client_id = "console"\nclient_secret = "s"\n'
                   'server_metadata_url = "https://id.example/realms/ml/.well-known/openid-configuration"\n')
    s = _auth(tmp_path, sec, MLOPS_AUTH_MODE="oidc", MLOPS_OIDC_ROLE_MAP=ROLE_MAP)
    assert (s.oidc_issuer, s.oidc_audience) == ("https://id.example/realms/ml", "console")
    s2 = _auth(tmp_path, sec, MLOPS_AUTH_MODE="oidc", MLOPS_OIDC_ROLE_MAP=ROLE_MAP, MLOPS_OIDC_AUDIENCE="ci")
    assert s2.oidc_audience == "ci", "the environment wins"


@pytest.mark.parametrize("env,word", [
    ({"MLOPS_AUTH_MODE": "saml"}, "MLOPS_AUTH_MODE must be one of dev, oidc, proxy"),
    ({"MLOPS_AUTH_MODE": "oidc"}, "needs MLOPS_OIDC_ROLE_MAP"),
    ({"MLOPS_AUTH_MODE": "proxy", "MLOPS_OIDC_ROLE_MAP": ROLE_MAP}, "needs MLOPS_TRUSTED_PROXIES"),
    ({"MLOPS_OIDC_ROLE_MAP": "ml-ops=operator+superuser"}, "unknown role 'superuser'"),
    ({"MLOPS_OIDC_ROLE_MAP": "ml-ops"}, "GROUP=ROLE"),
    ({"MLOPS_OIDC_ROLE_MAP": "=approver"}, "GROUP=ROLE"),
    ({"MLOPS_OIDC_ROLE_MAP": "ml-ops=operator,ml-ops=approver"}, "twice"),
    ({"MLOPS_OIDC_ROLE_MAP": " , "}, "MLOPS_OIDC_ROLE_MAP is empty"),
    ({"MLOPS_TRUSTED_PROXIES": "10.1.2.3/8"}, "MLOPS_TRUSTED_PROXIES: '10.1.2.3/8'"),
    ({"MLOPS_TRUSTED_PROXIES": "proxy.internal"}, "not an IP address"),
    ({"MLOPS_TRUSTED_PROXIES": "0.0.0.0/0"}, "trusts every address"),
    ({"MLOPS_OIDC_ISSUER": "http://id.example"}, "https://"),
    ({"MLOPS_OIDC_DEFAULT_ROLE": "admin"}, "MLOPS_OIDC_DEFAULT_ROLE"),
    ({"MLOPS_OIDC_SESSION_HOURS": "0"}, "MLOPS_OIDC_SESSION_HOURS"),
    ({"MLOPS_OIDC_TIMEOUT_SECONDS": "never"}, "MLOPS_OIDC_TIMEOUT_SECONDS"),
    ({"MLOPS_PROXY_USER_HEADER": "X User"}, "MLOPS_PROXY_USER_HEADER"),
])
def test_auth_settings_are_refused_naming_the_setting(tmp_path, env, word):
    with pytest.raises(Invalid, match=word.replace("(", r"\(")):
        _auth(tmp_path, **env)


def test_http_issuer_only_on_localhost(tmp_path):
    assert _auth(tmp_path, MLOPS_OIDC_ISSUER="http://127.0.0.1:9400").oidc_issuer == "http://127.0.0.1:9400"


@pytest.mark.parametrize("env,named", [
    ({"MLOPS_DATABASE_URL": "postgresql://console@db/console"}, "MLOPS_DATABASE_URL is a postgresql server"),
    ({"MLOPS_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1/t"}, "MLOPS_DATABASE_URL"),
    ({"MLFLOW_TRACKING_URI": "https://mlflow.internal"}, "MLFLOW_TRACKING_URI is a https server"),
    ({"MLOPS_SERVING_BACKEND": "kserve"}, "MLOPS_SERVING_BACKEND is kserve"),
])
def test_dev_identities_are_refused_on_data_that_is_not_local(tmp_path, env, named):
    with pytest.raises(Invalid, match=named) as refused:
        _auth(tmp_path, for_people=True, **env)
    assert "MLOPS_ALLOW_DEV_AUTH=1" in refused.value.message and "MLOPS_AUTH_MODE=oidc" in refused.value.message
    assert _auth(tmp_path, for_people=True, MLOPS_ALLOW_DEV_AUTH="1", **env).auth_mode == "dev", "forced"
    assert _auth(tmp_path, **env).auth_mode == "dev", "a process that acts for nobody (ingest, gateway) may start"
    assert _auth(tmp_path, for_people=True, MLOPS_AUTH_MODE="oidc", MLOPS_OIDC_ROLE_MAP=ROLE_MAP, **env)


def test_dev_identities_on_local_files_need_no_force(tmp_path):
    s = _auth(tmp_path, for_people=True, MLFLOW_TRACKING_URI=f"file://{tmp_path}/mlruns")
    assert s.auth_mode == "dev" and not s.allow_dev_auth


def test_identities_parse():
    assert parse_identities("a=operator+requester, b=approver") == {"a": ("operator", "requester"),
                                                                     "b": ("approver",)}
