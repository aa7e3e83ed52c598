"""Turn a spec's image source into a sorted list of image URIs, with errors naming the field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from PIL import Image, ImageFile, UnidentifiedImageError

from schemas.campaign_spec import FieldError, ImageSource
from services.errors import InvalidInput

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
MAX_IMAGES = 1_000_000


@dataclass(frozen=True)
class ImageRef:
    uri: str
    width: int | None = None
    height: int | None = None


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file's header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, UnidentifiedImageError):
        return None


def probe_s3_size(uri: str, s3_client: Any) -> tuple[int, int] | None:
    """(width, height) of an S3 image from its first bytes (a ranged GET, no full download)."""
    parsed = urlparse(uri)
    try:
        head = s3_client.get_object(
            Bucket=parsed.netloc, Key=parsed.path.lstrip("/"), Range="bytes=0-262143"
        )["Body"].read()
        parser = ImageFile.Parser()
        parser.feed(head)
        return parser.image.size if parser.image is not None else None
    except Exception:  # a size we cannot read is learned later, never a failed claim
        return None


def _refuse(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", errors=[FieldError(field=field, message=message)])


def list_images(
    source: ImageSource, *, base_dir: Path | None = None, s3_client: object = None
) -> list[ImageRef]:
    """The image URIs of a source: file:// for local files, s3:// for objects, else as given."""
    if source.directory is not None:
        root = Path(source.directory)
        if not root.is_absolute() and base_dir is not None:
            root = base_dir / root
        if not root.is_dir():
            raise _refuse("images.directory", f"{root} is not a directory")
        paths = sorted(
            p.resolve()
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        refs = []
        for path in paths:
            size = image_size(path)
            if size is None:
                raise _refuse("images.directory", f"{path} is not a readable image")
            refs.append(ImageRef(path.as_uri(), *size))
        if not refs:
            raise _refuse(
                "images.directory",
                f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {root}",
            )
        return refs
    if source.s3_prefix is not None:
        return _list_s3(source.s3_prefix, s3_client)
    if source.manifest is not None:
        path = Path(source.manifest)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise _refuse("images.manifest", f"{path} is not a file")
        refs = []
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("{"):
                refs.append(_manifest_entry(line, n))
            else:
                refs.append(ImageRef(_check_uri("images.manifest", line, f"line {n}: ")))
        if not refs:
            raise _refuse("images.manifest", "the manifest lists no images")
        return refs
    assert source.uris is not None  # the model guarantees exactly one source
    if not source.uris:
        raise _refuse("images.uris", "the list is empty")
    return [ImageRef(_check_uri(f"images.uris.{i}", u)) for i, u in enumerate(source.uris)]


def _manifest_entry(line: str, n: int) -> ImageRef:
    """A JSON line: {"uri": ..., "width": ..., "height": ...} (the size is optional)."""
    try:
        entry = json.loads(line)
        uri = entry["uri"]
        width, height = entry.get("width"), entry.get("height")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _refuse("images.manifest", f"line {n}: a JSON line needs a 'uri' string") from None
    if (width is None) != (height is None) or not all(
        v is None or (isinstance(v, int) and v > 0) for v in (width, height)
    ):
        raise _refuse("images.manifest", f"line {n}: width and height must be positive integers")
    return ImageRef(_check_uri("images.manifest", uri, f"line {n}: "), width, height)


def _check_uri(field: str, uri: str, where: str = "") -> str:
    scheme = urlparse(uri).scheme
    if scheme not in {"file", "s3", "http", "https"}:
        raise _refuse(field, f"{where}{uri!r} is not a file://, s3:// or http(s):// URI")
    return uri


def _list_s3(prefix_uri: str, s3_client: object) -> list[ImageRef]:
    if s3_client is None:
        raise _refuse("images.s3_prefix", "no S3 endpoint is configured (set QUORUM_S3__*)")
    parsed = urlparse(prefix_uri)
    bucket, prefix = parsed.netloc, parsed.path.lstrip("/")
    paginator = s3_client.get_paginator("list_objects_v2")  # type: ignore[attr-defined]
    uris: list[str] = []
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if Path(obj["Key"]).suffix.lower() in IMAGE_SUFFIXES:
                    uris.append(f"s3://{bucket}/{obj['Key']}")
                    if len(uris) > MAX_IMAGES:
                        raise _refuse("images.s3_prefix", f"more than {MAX_IMAGES} images")
    except InvalidInput:
        raise
    except Exception as exc:  # botocore raises many kinds; the operator needs the reason
        raise _refuse("images.s3_prefix", f"cannot list {prefix_uri}: {exc}") from exc
    if not uris:
        raise _refuse("images.s3_prefix", f"no image objects under {prefix_uri}")
    return [ImageRef(uri) for uri in sorted(uris)]
