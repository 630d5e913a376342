"""API keys in the store: only each key's SHA-256 hash (the key's id, and each job's owner) and its name.

Making a key and checking a request's header belong to :mod:`img2vid.server.keys`; this module is the keys'
SQL, one statement per move, with the database's clock for the creation and revocation times. It must never
receive, store or return a key in the clear.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from .database import Database
from .schema import api_keys

__all__ = ["ApiKeys", "ApiKeyRow"]


@dataclass(frozen=True)
class ApiKeyRow:
    key_hash: str
    name: str
    created_at: float
    revoked_at: float | None

    @property
    def key_id(self) -> str:
        """A short, non-secret handle to show and revoke by (the start of the hash)."""
        return self.key_hash[:12]


class ApiKeys:
    """The api_keys table."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.now = db.now

    def add_key(self, key_hash: str, name: str) -> ApiKeyRow:
        with self.db.begin() as conn:
            created = conn.execute(
                api_keys.insert().values(key_hash=key_hash, name=name, created_at=self.now).returning(api_keys.c.created_at)
            ).scalar_one()
        return ApiKeyRow(key_hash=key_hash, name=name, created_at=float(created), revoked_at=None)

    def key_is_active(self, key_hash: str) -> bool:
        with self.db.connect() as conn:
            row = conn.execute(select(api_keys.c.revoked_at).where(api_keys.c.key_hash == key_hash)).first()
        return row is not None and row[0] is None

    def list_keys(self) -> list[ApiKeyRow]:
        with self.db.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
        return [ApiKeyRow(*row) for row in rows]

    def revoke_key(self, key_id_or_name: str) -> list[ApiKeyRow]:
        """Revoke the active keys whose id (hash prefix, at least 8 characters) or name matches."""
        token = key_id_or_name.strip()
        matches = [
            row
            for row in self.list_keys()
            if row.revoked_at is None and (row.name == token or (len(token) >= 8 and row.key_hash.startswith(token)))
        ]
        if matches:
            with self.db.begin() as conn:
                for row in matches:
                    conn.execute(update(api_keys).where(api_keys.c.key_hash == row.key_hash).values(revoked_at=self.now))
        return matches
