"""Secrets (items): create, read, version, delete, batch read, list (SPEC section 5).

Every entry point decides access before it touches storage, so a caller who may not read a
name learns nothing about it: a missing item it may not read is a 403, like an existing one.
Values are sealed with AES-256-GCM under the newest data key, bound to (item id, version).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from strongroom.audit.writer import AuditWriter, audited_write
from strongroom.auth.tokens import Caller
from strongroom.crypto import item_context, key_id_of
from strongroom.db.engine import Database
from strongroom.db.hot import HotReads, VersionRow
from strongroom.db.live_keys import LiveKeyring
from strongroom.db.work import DatabaseWork
from strongroom.errors import ConflictError, ForbiddenError, NotFoundError, PayloadTooLargeError
from strongroom.kit.names import normalize_folder_path, normalize_item_path
from strongroom.rbac import Capability, RuleType
from strongroom.request_context import RequestContext
from strongroom.secrets import repository
from strongroom.secrets.repository import StoredItem
from strongroom.secrets.schemas import (
    MAX_VALUE_BYTES,
    GetSecretValue,
    Item,
    ItemListing,
    Secret,
    SecretCreate,
    SecretUpdate,
    SecretVersion,
    SecretVersions,
    SecretWritten,
)


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

    def create(self, caller: Caller, body: SecretCreate, context: RequestContext) -> SecretWritten:
        name = normalize_item_path(body.name)
        context.event.path = name
        caller.require(Capability.CREATE, RuleType.ITEM, name, context.now)
        plaintext = _encoded_value(body.value)
        try:
            with audited_write(self._db, self._writer, context.event, 201) as connection:
                item_id = repository.insert_item(
                    connection,
                    name=name,
                    description=body.description,
                    tags=body.tags,
                    now=context.now,
                )
                self._insert_version(connection, item_id, 1, plaintext, caller, context.now)
        except IntegrityError as exc:
            raise ConflictError(f"an item named {name} already exists") from exc
        return SecretWritten(name=name, version=1, created_at=context.now)

    async def read(
        self,
        caller: Caller,
        unverified_name: str,
        version: int | None,
        context: RequestContext,
    ) -> Secret:
        """One value (newest version unless ``version``); the hot path, one query (inline on
        SQLite, asynchronous on PostgreSQL: ``db/hot.py``)."""
        name = normalize_item_path(unverified_name)
        context.event.path = name
        caller.require(Capability.READ, RuleType.ITEM, name, context.now)
        item_id, stored_name, number, ciphertext, created_at = await self._version_row(
            name, version
        )
        return Secret(
            name=stored_name,
            value=(await self._open(ciphertext, item_context(item_id, number))).decode(),
            version=number,
            created_at=created_at,
        )

    async def read_many(
        self,
        caller: Caller,
        body: GetSecretValue,
        context: RequestContext,
    ) -> dict[str, str]:
        """``{name as requested: value}``; all or nothing: one forbidden name fails the call."""
        resolved = [(requested, normalize_item_path(requested)) for requested in body.names]
        context.event.path = ",".join(name for _, name in resolved)[:600]
        for _, name in resolved:
            caller.require(Capability.READ, RuleType.ITEM, name, context.now)
        values: dict[str, str] = {}
        for requested, name in resolved:
            item_id, _, number, ciphertext, _ = await self._version_row(name, body.version)
            sealed_to = item_context(item_id, number)
            values[requested] = (await self._open(ciphertext, sealed_to)).decode()
        return values

    def update(
        self,
        caller: Caller,
        unverified_name: str,
        body: SecretUpdate,
        context: RequestContext,
    ) -> SecretWritten:
        """Add a new version; 409 when ``expected_version`` is not the newest."""
        name = normalize_item_path(unverified_name)
        context.event.path = name
        caller.require(Capability.UPDATE, RuleType.ITEM, name, context.now)
        plaintext = _encoded_value(body.value)
        with audited_write(self._db, self._writer, context.event, 200) as connection:
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
            repository.set_latest_version(connection, item.id, version, context.now)
            self._insert_version(connection, item.id, version, plaintext, caller, context.now)
        return SecretWritten(name=name, version=version, created_at=context.now)

    def versions(
        self, caller: Caller, unverified_name: str, context: RequestContext
    ) -> SecretVersions:
        name = normalize_item_path(unverified_name)
        context.event.path = name
        caller.require(Capability.READ, RuleType.ITEM, name, context.now)
        with self._db.read() as connection:
            item = self._item_row(connection, name)
            rows = repository.versions_of(connection, item.id)
        return SecretVersions(
            name=name,
            latest_version=item.latest_version,
            versions=[
                SecretVersion(version=r.version, created_at=r.created_at, created_by=r.created_by)
                for r in rows
            ],
        )

    def describe(self, caller: Caller, unverified_name: str, context: RequestContext) -> Item:
        """Metadata without the value: for callers with ``list`` (or more) on the item."""
        name = normalize_item_path(unverified_name)
        context.event.path = name
        allowed = caller.allowed(RuleType.ITEM, name, context.now)
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
        context: RequestContext,
    ) -> None:
        """Delete the item, or one version (the last remaining version takes the item)."""
        name = normalize_item_path(unverified_name)
        context.event.path = name
        caller.require(Capability.DELETE, RuleType.ITEM, name, context.now)
        with audited_write(self._db, self._writer, context.event, 204) as connection:
            item = self._item_row(connection, name, lock=True)  # as update: one writer at a time
            if version is not None:
                if not repository.delete_version(connection, item.id, version):
                    raise NotFoundError(f"{name} has no version {version}")
                if self._newest_existing(connection, item.id) is not None:
                    return
            repository.delete_item(connection, item.id)

    def list(
        self,
        caller: Caller,
        unverified_path: str,
        recursive: bool,
        context: RequestContext,
    ) -> ItemListing:
        """Items the caller may list below ``path``, and the folders that lead to them.

        A folder appears only if something visible lies below it, so names the caller cannot
        see never leak through folder names.
        """
        folder = normalize_folder_path(unverified_path)
        context.event.path = folder
        low, high = _folder_bounds(folder)
        with self._db.read() as connection:
            rows = repository.items_in_range(connection, low, high)
        visible_items: list[Item] = []
        folders: set[str] = set()
        depth = 0 if folder == "/" else folder.count("/")
        for row in rows:
            allowed = caller.allowed(RuleType.ITEM, row.name, context.now)
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
        return ItemListing(path=folder, folders=sorted(folders), items=visible_items)

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
        repository.insert_version(
            connection,
            item_id=item_id,
            version=version,
            ciphertext=keyring.encrypt(plaintext, item_context(item_id, version)),
            key_id=keyring.newest_id,
            created_by=caller.access_id,
            now=now,
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
    def _item_row(connection: Connection, name: str, *, lock: bool = False) -> StoredItem:
        """The item's row; ``lock``: held until the transaction ends (PostgreSQL's FOR UPDATE;
        SQLite's write transactions exclude each other already)."""
        row = repository.item_by_name(connection, name, lock=lock)
        if row is None:
            raise NotFoundError(f"no item named {name}")
        return row

    @staticmethod
    def _newest_existing(connection: Connection, item_id: int) -> int | None:
        return repository.newest_existing_version(connection, item_id)

    @staticmethod
    def _render_item(row: StoredItem, allowed: frozenset[Capability]) -> Item:
        return Item(
            name=row.name,
            version=row.latest_version,
            description=row.description,
            tags=row.tags,
            created_at=row.created_at,
            updated_at=row.updated_at,
            permissions=sorted(allowed),
        )
