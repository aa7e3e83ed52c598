"""The dataset store (a local directory or an S3 bucket) and immutable, versioned datasets."""

from storage.dataset_versions import (
    MANIFEST_FORMAT,
    DatasetIntegrityError,
    PublishedVersion,
    PublishRequest,
    latest_version,
    list_datasets,
    list_versions,
    publish_version,
    read_manifest,
    read_records,
    rollback,
    verify_version,
)
from storage.object_store import (
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    S3ObjectStore,
    open_store,
    s3_client,
)

__all__ = [
    "MANIFEST_FORMAT",
    "DatasetIntegrityError",
    "LocalObjectStore",
    "ObjectNotFound",
    "ObjectStore",
    "PublishRequest",
    "PublishedVersion",
    "S3ObjectStore",
    "latest_version",
    "list_datasets",
    "list_versions",
    "open_store",
    "publish_version",
    "read_manifest",
    "read_records",
    "rollback",
    "s3_client",
    "verify_version",
]
