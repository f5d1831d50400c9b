"""Image assets: one row per distinct content, with its original and thumbnail in storage."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from datetime import datetime
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, default_storage, storages
from django.db import connection
from django.db.models import Field
from django.utils.functional import empty

from catalog.imaging import ImageFacts
from catalog.models import ImageAsset


def asset_storage_names(facts: ImageFacts) -> tuple[str, str]:
    """Content-addressed names: the same bytes always land at the same place, whoever stores them."""
    prefix = facts.sha256[:2]
    return (
        f"originals/{prefix}/{facts.sha256}.{facts.extension}",
        f"thumbnails/{prefix}/{facts.sha256}.jpg",
    )


def asset_get_or_create(*, facts: ImageFacts, data: bytes) -> tuple[ImageAsset, bool]:
    """The asset for these bytes, created with its stored original and thumbnail if new.

    Call it for bytes not known a moment ago (the Run looks the SHA-256 up before decoding). Safe under
    concurrency and re-runs: files are content-addressed and written atomically (a file left by a worker that
    died before its row was written is reused only when its size and SHA-256 match: a truncated one is written
    again) and the row is keyed by SHA-256, so a lost race returns the winner's row.
    """
    original_name, thumbnail_name = asset_storage_names(facts)
    if not stored_file_matches(default_storage, original_name, size=facts.byte_size, sha256=facts.sha256):
        original_name = storage_write_atomic(default_storage, original_name, data)
    if not stored_file_matches(default_storage, thumbnail_name, size=len(facts.thumbnail_jpeg)):
        thumbnail_name = storage_write_atomic(default_storage, thumbnail_name, facts.thumbnail_jpeg)
    asset = ImageAsset(
        sha256=facts.sha256,
        phash=facts.phash,
        color_signature=facts.color_signature,
        width=facts.width,
        height=facts.height,
        format=facts.format,
        byte_size=facts.byte_size,
        original=original_name,
        thumbnail=thumbnail_name,
    )
    if not _insert_unless_known(asset):  # another worker created it meanwhile
        return ImageAsset.objects.get(sha256=facts.sha256), False
    return asset, True


def asset_find(sha256: str) -> tuple[int, datetime] | None:
    """(id, created_at) of the asset with this SHA-256, if any.

    Every image a Run downloads is looked up here, from the fetch threads that share the GIL with the recording
    thread: one statement on the unique index, without the ORM's query building (about 0.6 ms of Python a call
    against 0.1 ms)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, created_at FROM {ImageAsset._meta.db_table} WHERE sha256 = %s", [sha256])  # noqa: S608 - our table
        row = cursor.fetchone()
    if row is None:
        return None
    return row[0], _from_db(ImageAsset._meta.get_field("created_at"), row[1])


def _from_db(field: Field, value: object) -> Any:
    """A raw cursor's value as the ORM would give it: the backend's converters for the field, then the field's own
    (SQLite hands a datetime back naive, where the ORM makes it aware)."""
    expression = field.get_col(field.model._meta.db_table)
    for converter in connection.ops.get_db_converters(expression) + expression.get_db_converters(connection):
        value = converter(value, expression, connection)
    return value


def _insert_unless_known(asset: ImageAsset) -> bool:
    """Inserts the asset unless its SHA-256 is known already (`INSERT ... ON CONFLICT (sha256) DO NOTHING`, one
    statement in its own transaction); True, with its pk set, when this call made the row. The values are prepared
    by each field as the ORM's save() would (timestamps, file names), without its per-call query building."""
    fields = [field for field in ImageAsset._meta.concrete_fields if not field.primary_key]
    values = [field.get_db_prep_save(field.pre_save(asset, add=True), connection) for field in fields]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.attname) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(ImageAsset._meta.db_table)} ({columns}) VALUES ({placeholders}) "  # noqa: S608 - our table
            f"ON CONFLICT ({quote('sha256')}) DO NOTHING RETURNING {quote('id')}",
            values,
        )
        row = cursor.fetchone()
    if row is None:
        return False
    asset.pk = row[0]
    asset._state.adding = False
    asset._state.db = connection.alias
    return True


def stored_file_matches(storage: Storage, name: str, *, size: int, sha256: str | None = None) -> bool:
    """Whether the stored file holds these bytes (its size, and its SHA-256 when given): `exists()` is not enough,
    a worker that died mid-write (before writes were atomic) left truncated files."""
    try:
        if not storage.exists(name) or storage.size(name) != size:
            return False
        if sha256 is None:
            return True
        digest = hashlib.sha256()
        with storage.open(name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == sha256


def _process_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


_UMASK = _process_umask()  # read once, at import: setting it later would race with threads creating files


def storage_forget_connections() -> None:
    """Makes this process build its storage afresh. Called in every forked child (catalog.apps): remote storage
    (S3) keeps pooled connections, and a child using the parent's sockets would mix its requests with the
    parent's or a sibling's answers."""
    storages._storages = {}  # type: ignore[attr-defined]  # the handler's instances (as Django's test signals reset them)
    default_storage._wrapped = empty  # type: ignore[attr-defined]  # a LazyObject: rebuilt on next use


def storage_write_atomic(storage: Storage, name: str, data: bytes) -> str:
    """Stores the bytes under this name, replacing what is there, so that no reader ever sees part of them;
    returns the name stored.

    On the file system: a temporary file in the same directory, flushed to disk, then renamed over the name
    (os.replace is atomic; a worker killed before the rename leaves only a hidden `.partial` file). Elsewhere
    (S3 and the like) one PUT is atomic already.
    """
    if not isinstance(storage, FileSystemStorage):
        return storage.save(name, ContentFile(data))
    path = storage.path(name)
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=storage.directory_permissions_mode or 0o777, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        # mkstemp makes the file 0o600: give it what the storage would have given it.
        os.chmod(temporary, storage.file_permissions_mode or (0o666 & ~_UMASK))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return name
