"""docs/component.md inputs -> objects: the Hugging Face token and the API's password, kept as secrets."""

from __future__ import annotations

import pytest

from .helpers import app, container, env, is_secret, run, unwrap, volumes, with_model

# --- HF token ----------------------------------------------------------------------------


def _token_wiring(result) -> tuple[dict, dict]:
    c = container(result)
    return env(c), volumes(result).get("hf-token")


def test_no_hf_token_no_secret():
    result = run(app())
    assert [s["metadata"]["name"] for s in result.find("Secret")] == ["stable-diffusion-htpasswd"]
    e, volume = _token_wiring(result)
    assert "HF_TOKEN_PATH" not in e and volume is None


def test_hf_token_from_pulumi_secret_config():
    result = run(with_model(app(), hf_token={"key": "hfToken"}),
                 extra_config={"stable-diffusion:hfToken": "hf_from_config"},
                 secret_keys=["stable-diffusion:hfToken"])
    secret = result.one("Secret", "stable-diffusion-hf-token")
    assert is_secret(secret["stringData"])
    assert unwrap(secret["stringData"]) == {"token": "hf_from_config"}
    e, volume = _token_wiring(result)
    assert volume["secret"]["secretName"] == "stable-diffusion-hf-token"
    assert e["HF_TOKEN_PATH"] == "/etc/stable-diffusion/hf/token"
    assert env(container(result, "model-download"))["HF_TOKEN_PATH"] == "/etc/stable-diffusion/hf/token"


def test_hf_token_config_key_must_exist():
    with pytest.raises(Exception) as raised:
        run(with_model(app(), hf_token={"key": "hfToken"}))
    assert "hfToken" in str(raised.value)


def test_hf_token_from_existing_kubernetes_secret_creates_nothing():
    result = run(with_model(app(), hf_token={"secret_name": "team-hf", "secret_key": "hf"}))
    assert result.find("Secret", "stable-diffusion-hf-token") == []
    e, volume = _token_wiring(result)
    assert volume["secret"]["secretName"] == "team-hf"
    assert volume["secret"]["items"] == [{"key": "hf", "path": "hf"}]
    assert e["HF_TOKEN_PATH"] == "/etc/stable-diffusion/hf/hf"


def test_hf_token_plain_string_is_stored_as_a_secret():
    result = run(with_model(app(), hf_token="hf_plain"))
    secret = result.one("Secret", "stable-diffusion-hf-token")
    assert is_secret(secret["stringData"])
    assert unwrap(secret["stringData"]) == {"token": "hf_plain"}


def test_hf_token_never_in_an_environment_variable():
    result = run(with_model(app(), hf_token="hf_plain"))
    for name in ("inference", "model-download"):
        for item in container(result, name)["env"]:
            assert "hf_plain" not in str(item)
            assert "secretKeyRef" not in str(item)


# --- auth --------------------------------------------------------------------------------


def test_auth_on_mounts_htpasswd_and_the_peer_token_from_random_passwords():
    result = run(app())
    passwords = {p.name: p for p in result.of_type("random:index/randomPassword:RandomPassword")}
    assert sorted(passwords) == ["stable-diffusion-api-password", "stable-diffusion-peer-token"]
    assert all(p.inputs["length"] == 32.0 for p in passwords.values())
    secret = result.one("Secret", "stable-diffusion-htpasswd")
    assert is_secret(secret["stringData"])
    assert sorted(unwrap(secret["stringData"])) == ["htpasswd", "peer-token"]  # key order is not part of it
    assert unwrap(secret["stringData"])["htpasswd"].startswith("admin:")
    variables = env(container(result))
    assert variables["SD_AUTH_FILE"] == "/etc/stable-diffusion/auth/htpasswd"
    # A file from the Secret, never a value in the environment.
    assert variables["SD_PEER_TOKEN_FILE"] == "/etc/stable-diffusion/auth/peer-token"
    assert all("secretKeyRef" not in str(item) for item in container(result)["env"])
    volume = volumes(result)["htpasswd"]["secret"]
    assert volume["secretName"] == "stable-diffusion-htpasswd"
    assert volume["items"] == [{"key": "htpasswd", "path": "htpasswd"}, {"key": "peer-token", "path": "peer-token"}]
    assert "peer" not in str(result.outputs)
    assert result.outputs["api_credentials"]["username"] == "admin"


def test_auth_off_has_no_password_secret_or_output():
    result = run(app(ingress_http={"auth": False}))
    assert result.of_type("random:index/randomPassword:RandomPassword") == []
    assert result.find("Secret") == []
    assert not {"SD_AUTH_FILE", "SD_PEER_TOKEN_FILE"} & set(env(container(result)))
    assert "api_credentials" not in result.outputs


def test_hf_token_config_key_in_another_namespace():
    result = run(with_model(app(), hf_token={"key": "shared:hfToken"}),
                 extra_config={"shared:hfToken": "hf_shared"}, secret_keys=["shared:hfToken"])
    assert unwrap(result.one("Secret", "stable-diffusion-hf-token")["stringData"]) == {"token": "hf_shared"}


def test_component_used_directly_with_a_raw_mapping_and_token_override():
    import pulumi

    from components import StableDiffusion

    def program():
        sd = StableDiffusion("imagegen", {"app": with_model(app(namespace="team-a"), hf_token="ignored"),
                                          "hf_token": pulumi.Output.from_input("hf_override")})
        pulumi.export("internal", sd.internal_api)

    result = run(app(), program=program)
    secret = result.one("Secret", "imagegen-hf-token")
    assert is_secret(secret["stringData"])
    assert unwrap(secret["stringData"]) == {"token": "hf_override"}
    assert result.outputs["internal"]["host"] == "imagegen.team-a.svc.cluster.local"
    assert result.one("Deployment")["metadata"]["name"] == "imagegen"
