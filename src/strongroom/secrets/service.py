"""Secrets (items): create, read, version, delete, batch read, list (SPEC section 5).

Every entry point decides access before it touches storage, so a caller who may not read a
name learns nothing about it: a missing item it may not read is a 403, like an existing one.
Values are sealed with AES-256-GCM under the newest data key, bound to (item id, version).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from strongroom.audit.event import AuditEvent
from strongroom.audit.writer import AuditWriter, audited_write
from strongroom.auth.tokens import Caller
from strongroom.crypto import item_context, key_id_of
from strongroom.db.engine import Database
from strongroom.db.hot import HotReads, VersionRow
from strongroom.db.live_keys import LiveKeyring
from strongroom.db.tables import item_versions, items
from strongroom.db.work import DatabaseWork
from strongroom.errors import ConflictError, ForbiddenError, NotFoundError, PayloadTooLargeError
from strongroom.kit.clock import isoformat_z
from strongroom.kit.names import normalize_folder_path, normalize_item_path
from strongroom.rbac import Capability, RuleType
from strongroom.secrets.schemas import MAX_VALUE_BYTES, GetSecretValue, SecretCreate, SecretUpdate


def _encoded_value(value: str) -> bytes:
    encoded = value.encode("utf-8")
    if len(encoded) > MAX_VALUE_BYTES:
        raise PayloadTooLargeError(f"a secret value is at most {MAX_VALUE_BYTES} bytes")
    return encoded


def _folder_bounds(folder: str) -> tuple[str, str]:
    """Name range of everything below ``folder``: an index range scan, no LIKE escaping."""
    prefix = "/" if folder == "/" else folder + "/"
    return prefix, prefix[:-1] + chr(ord("/") + 1)


class SecretService:
    def __init__(
        self,
        database: Database,
        writer: AuditWriter,
        keyring: LiveKeyring,
        hot: HotReads,
        work: DatabaseWork,
    ) -> None:
        self._db = database
        self._writer = writer
        self._keyring = keyring
        self._hot = hot
        self._work = work

    def create(
        self, caller: Caller, body: SecretCreate, event: AuditEvent, now: datetime
    ) -> dict[str, Any]:
        name = normalize_item_path(body.name)
        event.path = name
        caller.require(Capability.CREATE, RuleType.ITEM, name, now)
        plaintext = _encoded_value(body.value)
        try:
            with audited_write(self._db, self._writer, event, 201) as connection:
                item_id = connection.execute(
                    items.insert()
                    .values(
                        name=name,
                        description=body.description,
                        tags=body.tags,
                        latest_version=1,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(items.c.id)
                ).scalar_one()
                self._insert_version(connection, item_id, 1, plaintext, caller, now)
        except IntegrityError as exc:
            raise ConflictError(f"an item named {name} already exists") from exc
        return {"name": name, "version": 1, "created_at": isoformat_z(now)}

    async def read(
        self,
        caller: Caller,
        unverified_name: str,
        version: int | None,
        event: AuditEvent,
        now: datetime,
    ) -> dict[str, Any]:
        """One value (newest version unless ``version``); the hot path, one query (inline on
        SQLite, asynchronous on PostgreSQL: ``db/hot.py``)."""
        name = normalize_item_path(unverified_name)
        event.path = name
        caller.require(Capability.READ, RuleType.ITEM, name, now)
        item_id, stored_name, number, ciphertext, created_at = await self._version_row(
            name, version
        )
        return {
            "name": stored_name,
            "value": (await self._open(ciphertext, item_context(item_id, number))).decode(),
            "version": number,
            "created_at": isoformat_z(created_at),
        }

    async def read_many(
        self,
        caller: Caller,
        body: GetSecretValue,
        event: AuditEvent,
        now: datetime,
    ) -> dict[str, str]:
        """``{name as requested: value}``; all or nothing: one forbidden name fails the call."""
        resolved = [(requested, normalize_item_path(requested)) for requested in body.names]
        event.path = ",".join(name for _, name in resolved)[:600]
        for _, name in resolved:
            caller.require(Capability.READ, RuleType.ITEM, name, now)
        values: dict[str, str] = {}
        for requested, name in resolved:
            item_id, _, number, ciphertext, _ = await self._version_row(name, body.version)
            context = item_context(item_id, number)
            values[requested] = (await self._open(ciphertext, context)).decode()
        return values

    def update(
        self,
        caller: Caller,
        unverified_name: str,
        body: SecretUpdate,
        event: AuditEvent,
        now: datetime,
    ) -> dict[str, Any]:
        """Add a new version; 409 when ``expected_version`` is not the newest."""
        name = normalize_item_path(unverified_name)
        event.path = name
        caller.require(Capability.UPDATE, RuleType.ITEM, name, now)
        plaintext = _encoded_value(body.value)
        with audited_write(self._db, self._writer, event, 200) as connection:
            # Locked until commit: a writer racing on this item (another worker or replica)
            # waits here, then sees this version, so it gets a 409 or the next number, never
            # the same number (a unique-key violation, a 500).
            item = self._item_row(connection, name, lock=True)
            newest = self._newest_existing(connection, item.id)
            if body.expected_version is not None and body.expected_version != newest:
                raise ConflictError(
                    f"expected version {body.expected_version} but the newest is {newest}"
                )
            version = item.latest_version + 1
            connection.execute(
                update(items)
                .where(items.c.id == item.id)
                .values(latest_version=version, updated_at=now)
            )
            self._insert_version(connection, item.id, version, plaintext, caller, now)
        return {"name": name, "version": version, "created_at": isoformat_z(now)}

    def versions(
        self, caller: Caller, unverified_name: str, event: AuditEvent, now: datetime
    ) -> dict[str, Any]:
        name = normalize_item_path(unverified_name)
        event.path = name
        caller.require(Capability.READ, RuleType.ITEM, name, now)
        with self._db.read() as connection:
            item = self._item_row(connection, name)
            rows = connection.execute(
                select(
                    item_versions.c.version, item_versions.c.created_at, item_versions.c.created_by
                )
                .where(item_versions.c.item_id == item.id)
                .order_by(item_versions.c.version)
            ).all()
        return {
            "name": name,
            "latest_version": item.latest_version,
            "versions": [
                {
                    "version": r.version,
                    "created_at": isoformat_z(r.created_at),
                    "created_by": r.created_by,
                }
                for r in rows
            ],
        }

    def describe(
        self, caller: Caller, unverified_name: str, event: AuditEvent, now: datetime
    ) -> dict[str, Any]:
        """Metadata without the value: for callers with ``list`` (or more) on the item."""
        name = normalize_item_path(unverified_name)
        event.path = name
        allowed = caller.allowed(RuleType.ITEM, name, now)
        if Capability.LIST not in allowed:
            raise ForbiddenError(reason=f"list on item {name} not allowed")
        with self._db.read() as connection:
            item = self._item_row(connection, name)
        return self._render_item(item, allowed)

    def delete(
        self,
        caller: Caller,
        unverified_name: str,
        version: int | None,
        event: AuditEvent,
        now: datetime,
    ) -> None:
        """Delete the item, or one version (the last remaining version takes the item)."""
        name = normalize_item_path(unverified_name)
        event.path = name
        caller.require(Capability.DELETE, RuleType.ITEM, name, now)
        with audited_write(self._db, self._writer, event, 204) as connection:
            item = self._item_row(connection, name, lock=True)  # as update: one writer at a time
            if version is not None:
                removed = connection.execute(
                    delete(item_versions).where(
                        item_versions.c.item_id == item.id, item_versions.c.version == version
                    )
                ).rowcount
                if removed == 0:
                    raise NotFoundError(f"{name} has no version {version}")
                if self._newest_existing(connection, item.id) is not None:
                    return
            connection.execute(delete(items).where(items.c.id == item.id))

    def list(
        self,
        caller: Caller,
        unverified_path: str,
        recursive: bool,
        event: AuditEvent,
        now: datetime,
    ) -> dict[str, Any]:
        """Items the caller may list below ``path``, and the folders that lead to them.

        A folder appears only if something visible lies below it, so names the caller cannot
        see never leak through folder names.
        """
        folder = normalize_folder_path(unverified_path)
        event.path = folder
        low, high = _folder_bounds(folder)
        with self._db.read() as connection:
            rows = connection.execute(
                select(items).where(items.c.name >= low, items.c.name < high).order_by(items.c.name)
            ).all()
        visible_items: list[dict[str, Any]] = []
        folders: set[str] = set()
        depth = 0 if folder == "/" else folder.count("/")
        for row in rows:
            allowed = caller.allowed(RuleType.ITEM, row.name, now)
            if Capability.LIST not in allowed:
                continue
            segments = row.name.split("/")[1:]
            if recursive or len(segments) == depth + 1:
                visible_items.append(self._render_item(row, allowed))
            if len(segments) > depth + 1:
                folders.add("/" + "/".join(segments[: depth + 1]))
                if recursive:
                    folders.update(
                        "/" + "/".join(segments[:i]) for i in range(depth + 2, len(segments))
                    )
        return {"path": folder, "folders": sorted(folders), "items": visible_items}

    # -- storage helpers -------------------------------------------------------------------

    def _insert_version(
        self,
        connection: Connection,
        item_id: int,
        version: int,
        plaintext: bytes,
        caller: Caller,
        now: datetime,
    ) -> None:
        # The newest key the database holds, not the newest this process loaded: a value
        # written after `keys rotate` returned must not be left under the old key.
        keyring = self._keyring.for_write(connection)
        connection.execute(
            item_versions.insert().values(
                item_id=item_id,
                version=version,
                ciphertext=keyring.encrypt(plaintext, item_context(item_id, version)),
                key_id=keyring.newest_id,
                created_at=now,
                created_by=caller.access_id,
            )
        )

    async def _open(self, ciphertext: bytes, context: bytes) -> bytes:
        """Decrypt with the keys held; a value sealed under a key a rotation added since needs
        a look-up of that key, which is database work and goes through the seam (a thread on
        PostgreSQL), never a round trip on the event loop."""
        held = self._keyring.current
        if key_id_of(ciphertext) <= held.newest_id:
            return held.decrypt(ciphertext, context)
        return await self._work.run(self._keyring.decrypt, ciphertext, context)

    async def _version_row(self, name: str, version: int | None) -> VersionRow:
        row = await self._hot.version_row(name, version)
        if row is None:
            raise NotFoundError(
                f"{name} has no version {version}" if version else f"no item named {name}"
            )
        return row

    @staticmethod
    def _item_row(connection: Connection, name: str, *, lock: bool = False) -> Any:
        """The item's row; ``lock``: held until the transaction ends (PostgreSQL's FOR UPDATE;
        SQLite's write transactions exclude each other already)."""
        query = select(items).where(items.c.name == name)
        row = connection.execute(query.with_for_update() if lock else query).first()
        if row is None:
            raise NotFoundError(f"no item named {name}")
        return row

    @staticmethod
    def _newest_existing(connection: Connection, item_id: int) -> int | None:
        return connection.execute(
            select(func.max(item_versions.c.version)).where(item_versions.c.item_id == item_id)
        ).scalar_one_or_none()

    @staticmethod
    def _render_item(row: Any, allowed: frozenset[Capability]) -> dict[str, Any]:
        return {
            "name": row.name,
            "version": row.latest_version,
            "description": row.description,
            "tags": row.tags,
            "created_at": isoformat_z(row.created_at),
            "updated_at": isoformat_z(row.updated_at),
            "permissions": sorted(c.value for c in allowed),
        }
