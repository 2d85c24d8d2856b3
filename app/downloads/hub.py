"""The Hugging Face Hub side: endpoint, access token, file metadata, and Hub errors turned into advice.

Everything here goes through `huggingface_hub` (its URL scheme, headers, token store and error types); nothing runs
at import time, and nothing touches the network unless a function below is called. The library reads HF_ENDPOINT,
HF_HOME and HF_TOKEN_PATH once, at its import; the functions here read them when called, so setting them later
(from a test, or from the app before a download) is honoured.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx2  # the HTTP client huggingface_hub 2.x is built on; only its exception types are used here
from huggingface_hub import HfApi, constants, get_hf_file_metadata, get_token, hf_hub_url
from huggingface_hub.errors import (
    FileMetadataError,
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RevisionNotFoundError,
)

from app import __version__
from app.downloads import token_store
from app.downloads.catalog import HUB_WEBSITE, TOKEN_SETTINGS_URL, VARIANT_SOURCES, RemoteFile
from app.downloads.errors import (
    AccessDeniedError,
    DestinationError,
    DownloadError,
    HubUnavailableError,
    TokenError,
)
from app.downloads.layout import find_partials, partial_path
from app.downloads.plan import DownloadPlan, PlannedFile
from app.downloads.progress import format_bytes

log = logging.getLogger(__name__)

TOKEN_ENV = "HF_TOKEN"


@dataclass(frozen=True, slots=True)
class RemoteMetadata:
    """What the Hub says about one file at one commit."""

    url: str  # where the bytes are fetched (the Hub, or the storage host it redirects to)
    size: int
    etag: str  # sha256 for large (LFS/Xet) files, git blob sha1 for small ones
    commit: str
    send_token: bool  # False when the bytes come from another host: the token never leaves the Hub


def hub_endpoint() -> str:
    """`HF_ENDPOINT` read now (huggingface_hub reads it once, at import), else the library's endpoint."""
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def offline_mode() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return value in {"1", "ON", "YES", "TRUE"} or constants.is_offline_mode()


# ------------------------------------------------------------------------------------------------- tokens


def current_token() -> str | None:
    """The token huggingface_hub would use: `HF_TOKEN`, else the one in its token store (`hf auth login`)."""
    if token_store.token_path() == Path(constants.HF_TOKEN_PATH):
        return get_token()  # the library's own lookup, which also renews browser-login (OAuth) tokens
    # HF_HOME or HF_TOKEN_PATH changed since huggingface_hub was imported: the store they name now
    return token_store.env_token() or token_store.read_token(token_store.token_path())


def token_from_env() -> str:
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise TokenError(f"--token-from-env: the {TOKEN_ENV} environment variable is empty or not set")
    return token


def save_token(token: str) -> None:
    """Check `token` with the Hub at `hub_endpoint()` and keep it in huggingface_hub's token store at the paths the
    environment names now, as `hf auth login` does."""
    token = token.strip()
    if not token:
        raise TokenError("the access token is empty")
    if token.startswith("api_org"):
        raise TokenError(
            f"organisation tokens cannot sign in; create a personal read token at {TOKEN_SETTINGS_URL}"
        )
    if offline_mode():
        raise HubUnavailableError("HF_HUB_OFFLINE is set: unset it to sign in to Hugging Face")
    api = HfApi(endpoint=hub_endpoint(), library_name="sd35-studio", library_version=__version__)
    try:
        who = api.whoami(token=token)
    except HfHubHTTPError as exc:
        if exc.response is not None and exc.response.status_code == 401:
            raise TokenError(
                f"Hugging Face refused this token (unknown, expired or revoked). Create a read token at "
                f"{TOKEN_SETTINGS_URL}"
            ) from None
        raise HubUnavailableError(
            f"could not check the token with Hugging Face: {_status_line(exc)}"
        ) from None
    except (httpx2.RequestError, OfflineModeIsEnabled) as exc:
        raise HubUnavailableError(f"cannot reach Hugging Face to check the token: {exc}") from None
    path = token_store.write_token(token, _token_name(who))
    log.info("token saved in %s", path)


def _token_name(who: dict) -> str:
    """The name `hf auth login` stores a token under: its display name, else `oauth-<user>`."""
    access = (who.get("auth") or {}).get("accessToken") or {}
    return access.get("displayName") or f"oauth-{who.get('name', 'user')}"


# ---------------------------------------------------------------------------------------------- metadata


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def fetch_metadata(remote: RemoteFile, token: str | None, revision: str = "main") -> RemoteMetadata:
    """HEAD one file on the Hub (following redirects that stay on the Hub)."""
    endpoint = hub_endpoint()
    url = hf_hub_url(remote.repo_id, remote.filename, revision=revision, endpoint=endpoint)
    meta = get_hf_file_metadata(url, token=token or False, endpoint=endpoint)
    if meta.commit_hash is None or meta.etag is None:  # huggingface_hub raises first; kept as a guard
        raise HubUnavailableError(f"{endpoint} did not describe {remote.filename} (no commit or ETag)")
    if meta.size is None:
        raise HubUnavailableError(f"{endpoint} did not give the size of {remote.filename}; try again later")
    return RemoteMetadata(
        url=meta.location,
        size=meta.size,
        etag=meta.etag,
        commit=meta.commit_hash,
        send_token=_origin(meta.location) == _origin(url),
    )


def resolve_plan(
    plan: DownloadPlan, token: str | None
) -> tuple[DownloadPlan, tuple[RemoteMetadata | None, ...]]:
    """Exact sizes and versions from the Hub (one HEAD per file; no file data). None marks an optional file the
    repository does not have. All files of one repository come from the commit its first file resolved to."""
    if offline_mode():
        raise HubUnavailableError("HF_HUB_OFFLINE is set: unset it to download from Hugging Face")
    commits: dict[str, str] = {}
    metadata: list[RemoteMetadata | None] = []
    conflicts: list[str] = []
    for index, planned in enumerate(plan.files):
        remote = planned.remote
        try:
            meta = fetch_metadata(remote, token, revision=commits.get(remote.repo_id, "main"))
        except RemoteEntryNotFoundError:
            if not remote.optional:
                raise DownloadError(
                    f"{remote.filename} is not in {remote.repo_id} any more; the repository layout changed, so "
                    "this version of SD3.5 Studio cannot download it"
                ) from None
            log.info("%s has no %s; skipped (optional)", remote.repo_id, remote.filename)
            metadata.append(None)
            plan = plan.replace_file(index, PlannedFile(remote, 0, True, complete=True))
            continue
        except (HfHubHTTPError, httpx2.RequestError, OfflineModeIsEnabled, FileMetadataError) as exc:
            raise translate_hub_error(exc, remote, had_token=bool(token)) from None
        commits.setdefault(remote.repo_id, meta.commit)
        metadata.append(meta)
        plan = plan.replace_file(index, _with_remote_size(plan.destination, planned, meta))
        final = plan.destination / remote.local_path
        if planned.complete and planned.present_bytes != meta.size:
            conflicts.append(
                f"{final} ({format_bytes(planned.present_bytes)}, the Hub has {format_bytes(meta.size)})"
            )
    if conflicts:
        raise DestinationError(
            "these files are already in the destination but differ from the Hub's; move them away (or choose "
            "another folder) and try again: " + "; ".join(conflicts)
        )
    return plan, tuple(metadata)


def _with_remote_size(destination: Path, planned: PlannedFile, meta: RemoteMetadata) -> PlannedFile:
    if planned.complete:
        return PlannedFile(planned.remote, meta.size, True, planned.present_bytes, complete=True)
    current = partial_path(destination, planned.local_path, meta.etag)
    present = current.stat().st_size if current in find_partials(destination, planned.local_path) else 0
    return PlannedFile(planned.remote, meta.size, True, min(present, meta.size))


# ------------------------------------------------------------------------------------------------ errors


def _status_line(exc: HfHubHTTPError) -> str:
    status = exc.response.status_code if exc.response is not None else "an error"
    return f"the Hub answered {status}"


def _page_url(repo_id: str) -> str:
    return f"{HUB_WEBSITE}/{repo_id}"


def _label(repo_id: str) -> str:
    return next((s.label for s in VARIANT_SOURCES.values() if s.repo_id == repo_id), repo_id)


def translate_hub_error(exc: BaseException, remote: RemoteFile, *, had_token: bool) -> DownloadError:
    """A huggingface_hub / transport exception as a DownloadError whose message tells the user what to do."""
    if isinstance(exc, DownloadError):
        return exc
    page = _page_url(remote.repo_id)
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status in (401, 403) or isinstance(exc, GatedRepoError):
            return _access_denied(remote.repo_id, page, status, had_token, exc)
        if isinstance(exc, RevisionNotFoundError):
            return DownloadError(f"{remote.repo_id}: the requested revision does not exist")
        if status == 429 or status >= 500:
            return HubUnavailableError(
                f"Hugging Face is busy or unavailable ({status}) while fetching {remote.filename}; try again in a "
                "while. What has been downloaded is kept and the next attempt resumes from it."
            )
        return DownloadError(
            f"downloading {remote.filename} from {remote.repo_id} failed: {_status_line(exc)}"
        )
    if isinstance(exc, OfflineModeIsEnabled):
        return HubUnavailableError("HF_HUB_OFFLINE is set: unset it to download from Hugging Face")
    if isinstance(exc, httpx2.RequestError):
        return HubUnavailableError(
            f"cannot reach Hugging Face ({hub_endpoint()}): {exc.__class__.__name__}. Check the internet "
            "connection and try again; what has been downloaded is kept and the next attempt resumes from it."
        )
    if isinstance(exc, FileMetadataError):
        return HubUnavailableError(
            f"{hub_endpoint()} does not answer like the Hugging Face Hub ({exc}); check HF_ENDPOINT or the proxy"
        )
    return DownloadError(f"downloading {remote.filename} failed: {exc}")


def _access_denied(
    repo_id: str, page: str, status: int, had_token: bool, exc: HfHubHTTPError
) -> AccessDeniedError:
    label = _label(repo_id)
    server_says = exc.response.headers.get("X-Error-Message", "") if exc.response is not None else ""
    if status == 401 and server_says == "Invalid credentials in Authorization header":
        message = (
            f"Hugging Face refused the access token (expired or revoked?). Create a new read token at "
            f"{TOKEN_SETTINGS_URL}, and make sure you have accepted the {label} licence on {page}."
        )
    elif not had_token:
        message = (
            f"{label} is gated on Hugging Face. Sign in with an access token (create a read token at "
            f"{TOKEN_SETTINGS_URL}), accept the licence on the model's page, {page}, and try again."
        )
    else:
        message = (
            f"Hugging Face refused access to {label}: accept the licence on the model's page, {page}, while "
            "signed in to the account your token belongs to, then try again."
        )
    return AccessDeniedError(message, repo_id=repo_id, page_url=page, status=status)
