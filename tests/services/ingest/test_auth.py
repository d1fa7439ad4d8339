"""API keys: Basic public:secret (as Langfuse) or Bearer secret; only digests configured; a key writes
its own project; no placeholder secret outside development."""

import base64
from pathlib import Path

import pytest

from services.ingest.auth import DEV_PUBLIC_KEY, KeyRing, load_keys_file, main, new_key, secret_digest
from services.ingest.errors import Unauthorized
from services.ingest.settings import ApiKey, IngestSettings
from shared.settings import DEV_PLACEHOLDER_SECRET, SettingsError


def _basic(public: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{public}:{secret}".encode()).decode()


def test_basic_and_bearer_find_the_keys_project() -> None:
    public, secret, entry = new_key("shop")
    ring = KeyRing([entry, new_key("bank")[2]])
    assert ring.authenticate(_basic(public, secret)).project_id == "shop"
    assert ring.authenticate(f"Bearer {secret}").project_id == "shop"
    assert ring.projects == {"shop", "bank"}
    assert secret not in entry.model_dump_json(), "only the digest of the secret is configured"


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (None, "missing Authorization header"),
        ("", "missing Authorization header"),
        ("Basic !!!", "not base64"),
        ("Basic " + base64.b64encode(b"no-colon").decode(), "public_key:secret_key"),
        (_basic("pk-unknown", "x"), "invalid API key"),
        ("Bearer not-a-secret", "matches no secret key"),
        ("Digest abc", "unsupported authorization scheme"),
    ],
)
def test_bad_credentials_are_refused_saying_why(header: str | None, problem: str) -> None:
    public, secret, entry = new_key("shop")
    with pytest.raises(Unauthorized, match=problem):
        KeyRing([entry]).authenticate(header)
    with pytest.raises(Unauthorized, match="invalid API key"):
        KeyRing([entry]).authenticate(_basic(public, secret + "x"))


def test_development_has_a_placeholder_key_and_production_refuses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAIZEN_ENVIRONMENT", raising=False)
    development = KeyRing.from_settings(IngestSettings(project_id="shop"))
    assert development.authenticate(_basic(DEV_PUBLIC_KEY, DEV_PLACEHOLDER_SECRET)).project_id == "shop"

    production = IngestSettings(environment="production", s3={"secret_access_key": None})
    with pytest.raises(SettingsError, match="no API keys"):
        KeyRing.from_settings(production)
    production.ingest.api_keys = [
        ApiKey(project_id="shop", public_key="pk-1", secret_sha256=secret_digest(DEV_PLACEHOLDER_SECRET))
    ]
    with pytest.raises(SettingsError, match="development placeholder"):
        KeyRing.from_settings(production)
    production.ingest.api_keys = [new_key("shop")[2]]
    assert KeyRing.from_settings(production).projects == {"shop"}


def test_keys_come_from_a_yaml_file_too(tmp_path: Path) -> None:
    _, secret, entry = new_key("shop")
    path = tmp_path / "keys.yaml"
    path.write_text(
        "keys:\n  - project_id: shop\n"
        f"    public_key: {entry.public_key}\n    secret_sha256: {entry.secret_sha256}\n"
    )
    assert load_keys_file(path) == [entry]
    settings = IngestSettings(project_id="x")
    settings.ingest.keys_file = path
    assert KeyRing.from_settings(settings).authenticate(f"Bearer {secret}").project_id == "shop"
    path.write_text("keys:\n  - project_id: shop\n    public_key: pk\n    secret_sha256: nothex\n")
    with pytest.raises(SettingsError, match="secret_sha256"):
        load_keys_file(path)


def test_the_command_line_makes_a_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new-key", "--project", "shop"]) == 0
    out = capsys.readouterr().out
    assert "secret key: sk-lf-" in out
    assert '"project_id": "shop"' in out
