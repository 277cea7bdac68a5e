"""Data helpers shared by tasks: download-and-cache of public files."""

from rnnlab.data.download import DATA_DIR_ENV, TINY_SHAKESPEARE, RemoteFile, fetch, resolve_data_dir, sha256sum

__all__ = ["DATA_DIR_ENV", "TINY_SHAKESPEARE", "RemoteFile", "fetch", "resolve_data_dir", "sha256sum"]
