"""The files of a frozen export: the JSON Lines manifest and the ImageFolder zip. No Django here.

Zip layout, one folder per split and label (torchvision's ImageFolder reads it as is):

    train/<label>/<sha256>.jpg         the crop the model sees (the crop box applied to the original), JPEG
    train/<label>/<sha256>.full.<ext>  the full original, byte for byte (its SHA-256 is its name): a crop can hide
                                       that a picture is a placeholder
    test/<label>/...
    manifest.jsonl                     one JSON object per item (the same file is stored beside the zip)

Entries carry a fixed timestamp, so the same items give the same zip, byte for byte, and the same SHA-256.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import asdict, dataclass
from typing import IO, Any

from PIL import Image, ImageOps

from classifier.preprocess import flatten_to_rgb

MANIFEST_NAME = "manifest.jsonl"
CROP_QUALITY = 95
_EPOCH = (1980, 1, 1, 0, 0, 0)
EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif"}


def safe_label(label: str) -> str:
    """A label as a folder name: no path separators."""
    return label.replace("/", "-").replace("\\", "-").strip() or "_"


@dataclass(frozen=True)
class ManifestRow:
    """One item of the manifest."""

    item: int
    asset: int
    sha256: str
    label: str
    split: str
    group: str
    advertiser: str  # slug
    listing: int | None
    listing_url: str
    source: str
    fix: int | None
    crop_box: list[int] | None
    width: int
    height: int
    format: str
    model_label: str
    self_confidence: float | None
    decision: str

    @property
    def folder(self) -> str:
        return f"{self.split}/{safe_label(self.label)}"

    @property
    def crop_path(self) -> str:
        return f"{self.folder}/{self.sha256}.jpg"

    @property
    def full_path(self) -> str:
        extension = EXTENSIONS.get(self.format.upper(), self.format.lower() or "bin")
        return f"{self.folder}/{self.sha256}.full.{extension}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "crop": self.crop_path, "full": self.full_path}


def crop_jpeg(data: bytes, crop_box: list[int] | None) -> bytes:
    """The crop the model sees, as JPEG: the original oriented by EXIF, transparency on white, cut to the box
    ([x0, y0, x1, y1] in original pixels; None: the whole image). A JPEG's whole image is its own bytes."""
    image = Image.open(io.BytesIO(data))
    if crop_box is None and image.format in ("JPEG", "MPO"):
        return data
    image.load()
    rgb = flatten_to_rgb(ImageOps.exif_transpose(image) or image)
    if crop_box is not None:
        x0, y0, x1, y1 = crop_box
        x0, y0 = max(0, min(int(x0), rgb.width - 1)), max(0, min(int(y0), rgb.height - 1))
        x1, y1 = max(x0 + 1, min(int(x1), rgb.width)), max(y0 + 1, min(int(y1), rgb.height))
        rgb = rgb.crop((x0, y0, x1, y1))
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=CROP_QUALITY)
    return out.getvalue()


class DatasetWriter:
    """Writes the zip and the manifest. Each image path is written once (two advertisers with the same picture
    and label share it); the manifest lists every item."""

    def __init__(self, zip_file: IO[bytes], manifest_file: IO[bytes]) -> None:
        self.zip = zipfile.ZipFile(zip_file, "w", compression=zipfile.ZIP_STORED)
        self.manifest = manifest_file
        self.written: set[str] = set()
        self.items = 0

    def _entry(self, name: str, data: bytes, *, compress: bool = False) -> None:
        info = zipfile.ZipInfo(name, date_time=_EPOCH)
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        self.zip.writestr(info, data)

    def add(self, row: ManifestRow, *, crop: bytes, full: bytes) -> None:
        for name, data in ((row.crop_path, crop), (row.full_path, full)):
            if name not in self.written:
                self._entry(name, data)
                self.written.add(name)
        self.manifest.write(json.dumps(row.to_json(), sort_keys=True).encode() + b"\n")
        self.items += 1

    def close(self) -> None:
        """Adds the manifest to the zip and closes it."""
        self.manifest.flush()
        self.manifest.seek(0)
        self._entry(MANIFEST_NAME, self.manifest.read(), compress=True)
        self.zip.close()


def sha256_of(file: IO[bytes], *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file from its start."""
    file.seek(0)
    digest = hashlib.sha256()
    while block := file.read(chunk):
        digest.update(block)
    file.seek(0)
    return digest.hexdigest()
