"""The file store and the UID validation that guards its paths."""

from .filestore import FileStore, StoredObject, sha256_file
from .uids import is_valid_uid, validate_uid

__all__ = ["FileStore", "StoredObject", "is_valid_uid", "sha256_file", "validate_uid"]
