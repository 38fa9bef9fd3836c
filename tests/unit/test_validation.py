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


def test_auth_mode_other_than_dev_is_refused_until_oidc_exists(tmp_path):
    with pytest.raises(Invalid, match="MLOPS_AUTH_MODE"):
        Settings.from_env({"MLOPS_DATA_DIR": str(tmp_path), "MLOPS_AUTH_MODE": "oidc"},
                          secrets_path=tmp_path / "none.toml")


def test_identities_parse():
    assert parse_identities("a=operator+requester, b=approver") == {"a": ("operator", "requester"),
                                                                     "b": ("approver",)}
