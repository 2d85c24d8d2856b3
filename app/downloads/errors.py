"""Download errors: each message says what happened and what the user can do. Cancelling is not an error."""

from __future__ import annotations


class DownloadError(Exception):
    """A download that cannot go on; `str(exc)` is the message for the user."""


class AccessDeniedError(DownloadError):
    """The Hub refused a gated repository: no token, a refused token, or the licence not accepted yet."""

    def __init__(self, message: str, *, repo_id: str, page_url: str, status: int) -> None:
        super().__init__(message)
        self.repo_id = repo_id
        self.page_url = page_url
        self.status = status


class TokenError(DownloadError):
    """An access token that cannot be used or stored."""


class HubUnavailableError(DownloadError):
    """The Hub cannot be reached or answered with a server error; trying again later may work."""


class DestinationError(DownloadError):
    """The destination folder cannot be created or written, or holds a conflicting file."""


class DiskSpaceError(DestinationError):
    """Not enough free space for what is left to download (partial data is kept for the next attempt)."""


class IntegrityError(DownloadError):
    """A downloaded file does not match the Hub's size or checksum; its partial data was discarded."""


class IncompleteModelSetError(DownloadError):
    """All files arrived but the folder is not a usable model set."""


class DownloadCancelled(Exception):
    """The user cancelled. Partial data stays resumable; nothing finished-looking is left behind."""
