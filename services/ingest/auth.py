"""API keys: which project a request writes to.

A key is a pair, as Langfuse's: a public key (``pk-...``) and a secret key (``sk-...``). Clients send
``Authorization: Basic base64(public:secret)`` (what the Langfuse SDKs do) or ``Authorization: Bearer
<secret>``. Only sha256 digests of secrets are configured: keys are long random strings, so a fast
digest is as safe as a slow one and costs nothing per request. The project of every record is the
key's project; a request naming another project is refused.

    python -m services.ingest.auth new-key --project shop    # a fresh key pair and its config entry
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import secrets
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from services.ingest.errors import Unauthorized
from services.ingest.settings import ApiKey, IngestSettings
from shared.settings import DEV_PLACEHOLDER_SECRET, SettingsError

DEV_PUBLIC_KEY = "pk-kaizen-dev"
"""Public key of the development key (its secret is the development placeholder)."""


def secret_digest(secret: str) -> str:
    """The hex sha256 of a secret key, as configured in ``secret_sha256``."""
    return hashlib.sha256(secret.encode()).hexdigest()


PLACEHOLDER_DIGEST = secret_digest(DEV_PLACEHOLDER_SECRET)


@dataclass(frozen=True)
class Project:
    """The caller, as its key says: the project it may write, and which key it used."""

    project_id: str
    public_key: str


class KeyRing:
    """The configured keys, looked up by public key (Basic) or by secret digest (Bearer)."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self.keys = list(keys)
        self._by_public: dict[str, ApiKey] = {}
        self._by_digest: dict[str, ApiKey] = {}
        for key in self.keys:
            if key.public_key in self._by_public:
                raise SettingsError(f"API key {key.public_key!r} is configured twice")
            self._by_public[key.public_key] = key
            self._by_digest[key.secret_sha256] = key

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> KeyRing:
        """Keys from the settings and the keys file; the development key when none is configured.

        Outside development a missing key, or a key whose secret is the development placeholder,
        stops the service here, at startup.
        """
        keys = list(settings.ingest.api_keys)
        if settings.ingest.keys_file is not None:
            keys += load_keys_file(settings.ingest.keys_file)
        if settings.environment == "development":
            if not keys:
                keys = [
                    ApiKey(
                        project_id=settings.project_id,
                        public_key=DEV_PUBLIC_KEY,
                        secret_sha256=PLACEHOLDER_DIGEST,
                        name="development key (KAIZEN_ENVIRONMENT=development only)",
                    )
                ]
        else:
            if not keys:
                raise SettingsError(
                    "no API keys: set KAIZEN_INGEST__API_KEYS or KAIZEN_INGEST__KEYS_FILE "
                    "(python -m services.ingest.auth new-key --project <id> makes one)"
                )
            for key in keys:
                if hmac.compare_digest(key.secret_sha256, PLACEHOLDER_DIGEST):
                    raise SettingsError(
                        f"API key {key.public_key!r} has the development placeholder secret; "
                        "make a real key outside development"
                    )
        return cls(keys)

    @property
    def projects(self) -> frozenset[str]:
        return frozenset(key.project_id for key in self.keys)

    def authenticate(self, authorization: str | None) -> Project:
        """The project of an ``Authorization`` header value, or ``Unauthorized`` saying why not."""
        if not authorization:
            raise Unauthorized(
                "missing Authorization header: "
                "send Basic base64(public_key:secret_key) or Bearer <secret_key>"
            )
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise Unauthorized("Basic credentials are not base64 of public_key:secret_key") from None
            public_key, sep, secret = decoded.partition(":")
            if not sep:
                raise Unauthorized("Basic credentials must be public_key:secret_key")
            key = self._by_public.get(public_key)
            # Compare digests in constant time; an unknown public key still pays for one digest.
            digest = secret_digest(secret)
            if key is None or not hmac.compare_digest(digest, key.secret_sha256):
                raise Unauthorized("invalid API key: unknown public key or wrong secret key")
            return Project(key.project_id, key.public_key)
        if scheme.lower() == "bearer":
            key = self._by_digest.get(secret_digest(credentials))
            if key is None:
                raise Unauthorized("invalid API key: the Bearer token matches no secret key")
            return Project(key.project_id, key.public_key)
        raise Unauthorized(f"unsupported authorization scheme {scheme!r}: use Basic or Bearer")


_KEY_LIST = TypeAdapter(list[ApiKey])


def load_keys_file(path: Path) -> list[ApiKey]:
    """API keys from a YAML or JSON file: a list of entries, or a mapping with a ``keys`` list."""
    try:
        document: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"cannot read the keys file {path}: {exc}") from exc
    if isinstance(document, dict):
        document = document.get("keys", [])
    try:
        return _KEY_LIST.validate_python(document or [])
    except ValidationError as exc:
        raise SettingsError(f"the keys file {path} is invalid: {exc}") from exc


def new_key(project_id: str) -> tuple[str, str, ApiKey]:
    """A fresh key pair and the entry to configure (which holds no secret)."""
    public_key = f"pk-lf-{secrets.token_hex(16)}"
    secret_key = f"sk-lf-{secrets.token_urlsafe(32)}"
    entry = ApiKey(project_id=project_id, public_key=public_key, secret_sha256=secret_digest(secret_key))
    return public_key, secret_key, entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.ingest.auth", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("new-key", help="print a new key pair and the entry to add to the keys file")
    make.add_argument("--project", required=True, help="project the key writes to")
    digest = commands.add_parser("digest", help="print the secret_sha256 of a secret key read from stdin")
    digest.set_defaults(project=None)
    args = parser.parse_args(argv)
    if args.command == "new-key":
        public_key, secret_key, entry = new_key(args.project)
        sys.stdout.write(
            f"public key: {public_key}\nsecret key: {secret_key}   (shown once; give it to the app)\n"
            f"keys file entry:\n  {json.dumps(entry.model_dump(exclude_none=True))}\n"
        )
    else:
        sys.stdout.write(secret_digest(sys.stdin.readline().strip()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
