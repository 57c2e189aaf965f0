"""Unit tests for demo.config: layering, placeholders, env coercion, validation
and the generated secret key (no Flask)."""
from __future__ import annotations

import copy
import stat

import pytest

from demo.config import DEFAULTS, ConfigError, ensure_secret_key, env_layer, load_config

PRESET = """
company_name = "Preset Co"
client_id = "preset-client"
scope = "FB=4"
utility_name = "Preset Utility"
http_timeout = 3.5
"""

INSTANCE = """
client_id = "instance-client"
scope = "FB=16"
utility_name = "Instance Utility"
"""


@pytest.fixture
def config_dir(tmp_path):
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "mine.toml").write_text(PRESET)
    return folder


@pytest.fixture
def instance(tmp_path):
    folder = tmp_path / "instance"
    folder.mkdir()
    return folder


def _load(instance, config_dir=None, env=None, **overrides):
    kwargs = {"env": {} if env is None else env}
    if config_dir is not None:
        kwargs["config_dir"] = config_dir
    return load_config({"instance_path": str(instance), **overrides}, **kwargs)


# --- layering ---------------------------------------------------------------

def test_defaults_only_when_no_files(instance, config_dir):
    # config_dir has no pce.toml: the default preset is optional, defaults apply.
    settings = _load(instance, config_dir)
    assert settings["client_id"] == DEFAULTS["client_id"] == ""
    assert settings["scope"] == "FB=4_16_51"
    assert settings["company_name"] == "Test Company"
    assert settings["config_dir"] == str(config_dir)


def test_preset_overrides_defaults(instance, config_dir):
    settings = _load(instance, config_dir, preset="mine")
    assert settings["company_name"] == "Preset Co"
    assert settings["client_id"] == "preset-client"
    assert settings["http_timeout"] == 3.5
    assert settings["utility"] == "PCE"          # untouched default


def test_preset_chosen_by_env(instance, config_dir):
    settings = _load(instance, config_dir, env={"GBC_PRESET": "mine"})
    assert settings["client_id"] == "preset-client"


def test_instance_file_overrides_preset(instance, config_dir):
    (instance / "gbc.toml").write_text(INSTANCE)
    settings = _load(instance, config_dir, preset="mine")
    assert settings["client_id"] == "instance-client"
    assert settings["scope"] == "FB=16"
    assert settings["company_name"] == "Preset Co"   # only in the preset


def test_env_overrides_instance_file(instance, config_dir):
    (instance / "gbc.toml").write_text(INSTANCE)
    settings = _load(instance, config_dir, preset="mine",
                     env={"GBC_CLIENT_ID": "env-client", "GBC_SCOPE": "FB=39", "OTHER": "x"})
    assert settings["client_id"] == "env-client"
    assert settings["scope"] == "FB=39"
    assert settings["utility_name"] == "Instance Utility"


def test_overrides_win_over_env(instance, config_dir):
    (instance / "gbc.toml").write_text(INSTANCE)
    settings = _load(instance, config_dir, preset="mine",
                     env={"GBC_CLIENT_ID": "env-client", "GBC_SCOPE": "FB=39"},
                     client_id="override-client")
    assert settings["client_id"] == "override-client"
    assert settings["scope"] == "FB=39"


def test_instance_path_from_env_selects_instance_file(tmp_path, config_dir, instance):
    (instance / "gbc.toml").write_text(INSTANCE)
    settings = load_config(env={"GBC_INSTANCE_PATH": str(instance)}, config_dir=config_dir)
    assert settings["client_id"] == "instance-client"
    assert settings["database_url"] == f"sqlite:///{instance}/site.sqlite3"


def test_bad_toml_is_config_error(instance, config_dir):
    (instance / "gbc.toml").write_text("client_id = \n")
    with pytest.raises(ConfigError, match="gbc.toml"):
        _load(instance, config_dir)


def test_loading_does_not_mutate_defaults(instance):
    before = copy.deepcopy(DEFAULTS)
    _load(instance, client_id="x", sandbox_port=6002)
    assert DEFAULTS == before


# --- the real PCE preset ----------------------------------------------------

def test_pce_preset_values(instance):
    settings = _load(instance)
    assert settings["preset"] == "pce"
    assert settings["utility"] == "PCE"
    assert settings["client_id"] == "PCE_ccccccccc"
    assert settings["scope"] == "FB=4_16_51"
    assert settings["pkce"] is True
    assert settings["token_auth_method"] == "client_secret_basic"
    assert settings["authorize_url"] == "http://127.0.0.1:5001/oauth/authorize"
    assert settings["token_url"] == "http://127.0.0.1:5001/oauth/token"
    assert settings["redirect_uri"] == "http://127.0.0.1:5000/callback"
    assert settings["database_url"] == f"sqlite:///{instance}/site.sqlite3"
    client = settings["sandbox_clients"][0]
    assert client["client_id"] == "PCE_ccccccccc"
    assert "http://127.0.0.1:5000/callback" in client["redirect_uris"]
    assert all("{" not in uri for uri in client["redirect_uris"])


def test_placeholders_follow_port_changes(instance):
    settings = _load(instance, env={"GBC_SANDBOX_PORT": "6001", "GBC_SITE_PORT": "7000"})
    assert settings["sandbox_port"] == 6001
    assert settings["sandbox_url"] == "http://127.0.0.1:6001"
    assert settings["authorize_url"] == "http://127.0.0.1:6001/oauth/authorize"
    assert settings["token_url"] == "http://127.0.0.1:6001/oauth/token"
    assert settings["redirect_uri"] == "http://127.0.0.1:7000/callback"
    assert settings["sandbox_clients"][0]["redirect_uris"][0] == "http://127.0.0.1:7000/callback"


def test_placeholders_follow_host_override(instance):
    settings = _load(instance, sandbox_host="localhost")
    assert settings["authorize_url"] == "http://localhost:5001/oauth/authorize"


def test_explicit_url_is_not_rewritten(instance):
    settings = _load(instance, env={"GBC_AUTHORIZE_URL": "https://utilityapi.com/oauth/PCE",
                                    "GBC_SANDBOX_PORT": "6001"})
    assert settings["authorize_url"] == "https://utilityapi.com/oauth/PCE"
    assert settings["token_url"] == "http://127.0.0.1:6001/oauth/token"


def test_placeholder_loop_is_config_error(instance):
    with pytest.raises(ConfigError, match="placeholder loop"):
        _load(instance, site_url="{site_url}")


def test_unknown_placeholder_left_alone(instance):
    settings = _load(instance, company_name="{nosuch} Co")
    assert settings["company_name"] == "{nosuch} Co"


# --- env coercion ------------------------------------------------------------

@pytest.mark.parametrize("raw,expected", [
    ("false", False), ("FALSE", False), ("0", False), ("no", False), ("off", False), ("", False),
    ("true", True), ("1", True), ("Yes", True), (" on ", True),
])
def test_bool_coercion(raw, expected):
    assert env_layer({"GBC_SANDBOX": raw}) == {"sandbox": expected}


def test_env_bools_reach_settings(instance):
    settings = _load(instance, env={"GBC_SANDBOX": "false", "GBC_PKCE": "0"})
    assert settings["sandbox"] is False
    assert settings["pkce"] is False


def test_bad_bool_is_config_error():
    with pytest.raises(ConfigError, match="GBC_PKCE"):
        env_layer({"GBC_PKCE": "maybe"})


def test_int_and_float_coercion():
    layer = env_layer({"GBC_SANDBOX_PORT": "6001", "GBC_HTTP_TIMEOUT": "2.5", "GBC_CLIENT_ID": "123"})
    assert layer == {"sandbox_port": 6001, "http_timeout": 2.5, "client_id": "123"}
    assert type(layer["sandbox_port"]) is int


@pytest.mark.parametrize("name", ["GBC_SANDBOX_PORT", "GBC_SANDBOX_OTP_TTL"])
def test_bad_int_is_config_error_naming_the_variable(instance, name):
    with pytest.raises(ConfigError, match=name):
        _load(instance, env={name: "six thousand"})


def test_bad_float_is_config_error():
    with pytest.raises(ConfigError, match="GBC_HTTP_TIMEOUT"):
        env_layer({"GBC_HTTP_TIMEOUT": "soon"})


def test_env_layer_ignores_other_variables_and_structured_keys():
    layer = env_layer({"GBC_": "x", "PATH": "/bin", "gbc_client_id": "lower", "GBC_SANDBOX_CLIENTS": "[]"})
    assert layer == {}


# --- validation ----------------------------------------------------------------

def test_bad_token_auth_method(instance):
    with pytest.raises(ConfigError, match="token_auth_method"):
        _load(instance, token_auth_method="private_key_jwt")


def test_bad_token_auth_method_from_env(instance):
    with pytest.raises(ConfigError, match="client_secret_basic"):
        _load(instance, env={"GBC_TOKEN_AUTH_METHOD": "none"})


def test_client_secret_post_allowed(instance):
    assert _load(instance, token_auth_method="client_secret_post")["token_auth_method"] == "client_secret_post"


@pytest.mark.parametrize("port", [-1, 65536])
def test_port_out_of_range(instance, port):
    with pytest.raises(ConfigError, match="sandbox_port"):
        _load(instance, sandbox_port=port)


def test_non_numeric_port_in_file_is_config_error(instance):
    (instance / "gbc.toml").write_text('sandbox_port = "not-a-port"\n')
    with pytest.raises(ConfigError):
        _load(instance)


def test_unknown_preset(instance, config_dir):
    with pytest.raises(ConfigError, match="nosuch"):
        _load(instance, config_dir, preset="nosuch")


@pytest.mark.parametrize("preset", ["../pce", "config/pce", "a/b", "..", "pce.toml", "pce toml"])
def test_preset_must_be_a_plain_name(instance, preset):
    with pytest.raises(ConfigError, match="plain file name"):
        _load(instance, preset=preset)


def test_preset_with_slash_from_env(instance):
    with pytest.raises(ConfigError, match="plain file name"):
        _load(instance, env={"GBC_PRESET": "../../etc/passwd"})


# --- secret key ----------------------------------------------------------------

def test_ensure_secret_key_creates_private_file_once(tmp_path):
    folder = tmp_path / "new" / "instance"
    settings = {"instance_path": str(folder), "secret_key": ""}
    first = ensure_secret_key(settings)
    path = folder / "secret_key"
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64 and int(first, 16) >= 0
    mtime = path.stat().st_mtime_ns
    assert ensure_secret_key(settings) == first
    assert ensure_secret_key(dict(settings)) == first
    assert path.stat().st_mtime_ns == mtime


def test_ensure_secret_key_named_files_differ(tmp_path):
    settings = {"instance_path": str(tmp_path), "secret_key": ""}
    a = ensure_secret_key(settings, "a_key")
    b = ensure_secret_key(settings, "b_key")
    assert a != b
    assert (tmp_path / "a_key").read_text().strip() == a


def test_ensure_secret_key_prefers_configured(tmp_path):
    settings = {"instance_path": str(tmp_path), "secret_key": "configured"}
    assert ensure_secret_key(settings) == "configured"
    assert not (tmp_path / "secret_key").exists()



def test_secret_key_is_shared_by_workers_starting_together(tmp_path):
    import threading

    from demo.config import ensure_secret_key

    settings = {"secret_key": "", "instance_path": str(tmp_path / "inst")}
    keys, barrier = [], threading.Barrier(8)

    def worker():
        barrier.wait()
        keys.append(ensure_secret_key(dict(settings)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1 and len(keys[0]) == 64
    assert sorted(p.name for p in (tmp_path / "inst").iterdir()) == ["secret_key"]


def test_embed_origins_from_env_are_split_and_checked(instance):
    env = {"GBC_EMBED_ORIGINS": "https://sales.example.com, http://localhost:8080  https://[::1]:9000"}
    assert _load(instance, env=env)["embed_origins"] == [
        "https://sales.example.com", "http://localhost:8080", "https://[::1]:9000"]
    assert _load(instance)["embed_origins"] == []


@pytest.mark.parametrize("bad", [["https://sales.example.com/"], ["https://sales.example.com/deck"], ["*"],
                                 ["https://*.example.com"], ["sales.example.com"], ["'self'"],
                                 ["https://a.example.com; script-src *"], [5], 5, {"a": 1}])
def test_bad_embed_origins_are_a_config_error(instance, bad):
    with pytest.raises(ConfigError, match="embed_origins"):
        _load(instance, embed_origins=bad)


def test_embed_origins_in_a_file_must_be_a_list(instance):
    (instance / "gbc.toml").write_text("embed_origins = 443\n")
    with pytest.raises(ConfigError, match="embed_origins"):
        _load(instance)


@pytest.mark.parametrize("bad", ["0f6b6b", "#0f6b6", "#0f6b6bz", "teal", 123])
def test_bad_brand_accent_is_a_config_error(instance, bad):
    with pytest.raises(ConfigError, match="brand_accent"):
        _load(instance, brand_accent=bad)


def test_preset_link_ttl_must_be_seconds(instance):
    (instance / "gbc.toml").write_text('preset_link_ttl = "a week"\n')
    with pytest.raises(ConfigError, match="preset_link_ttl"):
        _load(instance)
    with pytest.raises(ConfigError, match="GBC_PRESET_LINK_TTL"):
        _load(instance, env={"GBC_PRESET_LINK_TTL": "a week"})
    assert _load(instance, env={"GBC_PRESET_LINK_TTL": "3600"})["preset_link_ttl"] == 3600
