"""Downloads against a local Hub (tests/downloads/fake_hub.py): full, resumed, refused, cancelled, disk problems."""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from app.downloads import transfer
from app.downloads.catalog import TAESD3_FILE
from app.downloads.downloader import download_model_set
from app.downloads.errors import (
    AccessDeniedError,
    DestinationError,
    DiskSpaceError,
    DownloadCancelled,
    HubUnavailableError,
    IntegrityError,
)
from app.downloads.layout import PARTIAL_DIR, find_partials
from app.downloads.plan import build_plan
from app.downloads.progress import DownloadProgress, Phase
from tests.downloads.conftest import GOOD_TOKEN, MEDIUM_REPO, NO_LICENCE_TOKEN, TEST_CHUNK
from tests.downloads.fake_hub import FakeHub

CHECKPOINT = "sd3.5_medium.safetensors"
T5 = "text_encoders/t5xxl_fp16.safetensors"
MEDIUM_PAGE = f"https://huggingface.co/{MEDIUM_REPO}"


def _download(dest: Path, token: str | None = GOOD_TOKEN, **kwargs):
    return download_model_set(build_plan("medium", "fp16", dest), token=token, **kwargs)


def _cdn_gets(hub: FakeHub, sha: str) -> list:
    return [r for r in hub.requests("cdn", "GET") if r.path.endswith(sha)]


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _assert_no_model_set(dest: Path) -> None:
    from app.inference.api.errors import InferenceError
    from app.inference.checkpoints.model_set import locate_model_set

    assert not list(dest.glob("*.safetensors")), "a checkpoint is in place: the folder looks like a model set"
    with pytest.raises(InferenceError):
        locate_model_set(dest)


# ---------------------------------------------------------------------------------------------------- full


def test_full_download_is_a_model_set_that_locate_accepts(fake_hub, served_medium, served_repos, tmp_path):
    from app.inference.checkpoints.model_set import locate_model_set
    from app.inference.checkpoints.taesd_loading import find_taesd3_decoder, load_taesd3_decoder

    dest = tmp_path / "models" / "medium"
    events: list[DownloadProgress] = []
    result = _download(dest, on_progress=events.append)

    model_set = locate_model_set(dest)
    assert model_set.variant == "medium"
    assert model_set.t5 is not None and model_set.clip_l is not None and model_set.clip_g is not None
    assert result.model_name == "sd3.5_medium"
    for name, data in served_medium.items():
        if name != "README.md":
            assert (dest / name).read_bytes() == data, name
    assert not (dest / "README.md").exists()  # only the files the plan names
    taesd = dest / TAESD3_FILE.local_path
    assert taesd.read_bytes() == served_repos[TAESD3_FILE.repo_id][TAESD3_FILE.filename]
    assert find_taesd3_decoder(dest) == taesd
    load_taesd3_decoder(taesd)  # the preview decoder the session would use
    assert not (dest / PARTIAL_DIR).exists()

    # sizes from the Hub's metadata: exact, and the total is what arrived
    served_total = sum(len(d) for n, d in served_medium.items() if n != "README.md") + taesd.stat().st_size
    assert result.plan.sizes_exact and result.plan.total_bytes == served_total
    assert result.fetched_bytes == served_total
    downloading = [e for e in events if e.phase is Phase.DOWNLOADING]
    assert [e.done_bytes for e in downloading] == sorted(e.done_bytes for e in downloading)
    assert downloading[-1].done_bytes == served_total == downloading[-1].total_bytes
    assert events[-1].phase is Phase.DONE
    assert [e.phase for e in events].index(Phase.CHECKING_MODEL_SET) > [e.phase for e in events].index(
        Phase.VERIFYING
    )

    # the token goes to the Hub, never to the storage host it redirects to
    assert all(r.authorization == f"Bearer {GOOD_TOKEN}" for r in fake_hub.requests("hub"))
    assert fake_hub.requests("cdn") and all(r.authorization is None for r in fake_hub.requests("cdn"))
    # every file of the gated repository came from one commit, pinned after the first answer
    revisions = {
        r.path.split("/resolve/")[1].split("/")[0] for r in fake_hub.requests("hub") if MEDIUM_REPO in r.path
    }
    assert revisions == {"main", fake_hub.state.commit(MEDIUM_REPO)}


def test_second_run_downloads_nothing(fake_hub, tmp_path):
    dest = tmp_path / "m"
    _download(dest)
    gets_before = len(fake_hub.requests(method="GET"))
    again = _download(dest)
    assert again.fetched_files == 0 and again.fetched_bytes == 0
    assert len(fake_hub.requests(method="GET")) == gets_before  # HEADs only


def test_building_a_plan_touches_no_network(fake_hub, tmp_path):
    plan = build_plan("medium", "fp8", tmp_path / "m")
    assert plan.files[-1].local_path == CHECKPOINT
    assert not fake_hub.state.log
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------------------------- resuming


def test_connection_dropped_mid_file_resumes_with_a_range_request(fake_hub, served_medium, tmp_path):
    data = served_medium[CHECKPOINT]
    cut = 20 * TEST_CHUNK + 123
    fake_hub.state.drop_after[CHECKPOINT] = cut

    _download(tmp_path / "m")

    assert (tmp_path / "m" / CHECKPOINT).read_bytes() == data
    first, second = _cdn_gets(fake_hub, _sha(data))
    assert first.range is None
    start = int(second.range.removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= cut and start % TEST_CHUNK == 0  # whole chunks written before the drop are kept


def test_failed_attempt_keeps_partial_data_and_the_next_attempt_resumes(fake_hub, served_medium, tmp_path):
    dest = tmp_path / "m"
    data = served_medium[CHECKPOINT]
    fake_hub.state.drop_after[CHECKPOINT] = 30 * TEST_CHUNK
    fake_hub.state.fail_next[CHECKPOINT] = [503]  # the retry inside the attempt fails: the attempt gives up

    with pytest.raises(HubUnavailableError, match="try again"):
        _download(dest)

    _assert_no_model_set(dest)
    (partial,) = find_partials(dest, CHECKPOINT)
    assert partial.name.endswith(".incomplete") and partial.parent.name == PARTIAL_DIR
    kept = partial.stat().st_size
    assert kept == 30 * TEST_CHUNK and partial.read_bytes() == data[:kept]
    assert build_plan("medium", "fp16", dest).files[-1].present_bytes == kept  # the plan shows what resumes

    result = _download(dest)  # the Hub is fine again

    assert (dest / CHECKPOINT).read_bytes() == data
    assert _cdn_gets(fake_hub, _sha(data))[-1].range == f"bytes={kept}-"
    assert result.fetched_bytes == len(data) - kept  # only the checkpoint's missing part came over the wire
    assert not (dest / PARTIAL_DIR).exists()


def test_corrupt_partial_data_is_caught_by_the_checksum_and_discarded(fake_hub, served_medium, tmp_path):
    dest = tmp_path / "m"
    data = served_medium[CHECKPOINT]
    partial = dest / PARTIAL_DIR / f"{CHECKPOINT}.{_sha(data)}.incomplete"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\xff" * 1000)  # not the file's first bytes

    with pytest.raises(IntegrityError, match="checksum"):
        _download(dest)
    assert not partial.exists() and not (dest / CHECKPOINT).exists()

    _download(dest)
    assert (dest / CHECKPOINT).read_bytes() == data


# ------------------------------------------------------------------------------------------ gated repos


def test_gated_repo_without_a_token_asks_for_a_token_and_the_licence(fake_hub, tmp_path):
    with pytest.raises(AccessDeniedError) as caught:
        _download(tmp_path / "m", token=None)
    message = str(caught.value)
    assert caught.value.status == 401 and caught.value.page_url == MEDIUM_PAGE
    assert "accept the licence" in message and MEDIUM_PAGE in message
    assert "https://huggingface.co/settings/tokens" in message
    assert not fake_hub.requests(method="GET")  # refused while checking: no data was requested
    assert not any(p.is_file() for p in (tmp_path / "m").rglob("*"))


def test_token_without_licence_is_told_to_accept_it_on_the_models_page(fake_hub, tmp_path):
    with pytest.raises(AccessDeniedError) as caught:
        _download(tmp_path / "m", token=NO_LICENCE_TOKEN)
    assert caught.value.status == 403
    assert f"accept the licence on the model's page, {MEDIUM_PAGE}" in str(caught.value)


def test_unknown_token_is_reported_as_refused(fake_hub, tmp_path):
    with pytest.raises(AccessDeniedError, match="refused the access token"):
        _download(tmp_path / "m", token="hf_revoked")


# --------------------------------------------------------------------------------------------- cancelling


def _cancel_when(file_name: str) -> tuple[threading.Event, Callable[[DownloadProgress], None]]:
    cancel = threading.Event()

    def on_progress(p: DownloadProgress) -> None:
        if p.phase is Phase.DOWNLOADING and p.file_name == file_name and p.file_done > 0:
            cancel.set()  # a UI sets it from its own thread; here the first bytes of the file trigger it

    return cancel, on_progress


@pytest.mark.parametrize("file_name", [T5, CHECKPOINT])
def test_cancel_leaves_no_model_set_and_the_next_attempt_resumes(
    fake_hub, served_medium, tmp_path, file_name
):
    dest = tmp_path / "m"
    data = served_medium[file_name]
    cancel, on_progress = _cancel_when(file_name)

    with pytest.raises(DownloadCancelled):
        _download(dest, on_progress=on_progress, cancel=cancel)

    _assert_no_model_set(dest)
    assert not (dest / file_name).exists()
    (partial,) = find_partials(dest, file_name)
    kept = partial.stat().st_size
    assert 0 < kept < len(data) and partial.read_bytes() == data[:kept]

    _download(dest)

    assert (dest / file_name).read_bytes() == data
    assert _cdn_gets(fake_hub, _sha(data))[-1].range == f"bytes={kept}-"


def test_cancel_before_start_sends_nothing(fake_hub, tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(DownloadCancelled):
        _download(tmp_path / "m", cancel=cancel)
    assert not fake_hub.state.log


# ------------------------------------------------------------------------------------ destination and disk


def test_not_enough_free_space_is_refused_before_any_data(fake_hub, tmp_path):
    with pytest.raises(DiskSpaceError, match="free some space"):
        _download(tmp_path / "m", free_bytes=lambda _path: 1_000_000)
    assert not fake_hub.requests(method="GET")


def test_disk_full_mid_file_keeps_the_data_for_the_next_attempt(
    fake_hub, served_medium, tmp_path, monkeypatch
):
    dest = tmp_path / "m"
    data = served_medium[CHECKPOINT]
    real_open = transfer._open_partial
    limit = 10 * TEST_CHUNK

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def write(self, chunk: bytes) -> int:
            if self.handle.tell() + len(chunk) > limit:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.handle.write(chunk)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(
        transfer,
        "_open_partial",
        lambda path: FullDisk(real_open(path)) if path.name.startswith(CHECKPOINT) else real_open(path),
    )
    with pytest.raises(DiskSpaceError, match="kept"):
        _download(dest)
    (partial,) = find_partials(dest, CHECKPOINT)
    assert partial.read_bytes() == data[:limit]
    _assert_no_model_set(dest)

    monkeypatch.setattr(transfer, "_open_partial", real_open)  # space was freed
    _download(dest)
    assert (dest / CHECKPOINT).read_bytes() == data
    assert _cdn_gets(fake_hub, _sha(data))[-1].range == f"bytes={limit}-"


def test_destination_under_a_file_is_a_clear_error_before_any_request(fake_hub, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DestinationError, match="not a folder"):
        _download(blocker / "models")
    assert not fake_hub.state.log
    assert blocker.read_text() == "not a folder"


def test_a_different_file_already_in_place_is_left_alone(fake_hub, tmp_path):
    dest = tmp_path / "m"
    dest.mkdir()
    mine = dest / CHECKPOINT
    mine.write_bytes(b"my own fine-tune, not the Hub's file")
    with pytest.raises(DestinationError, match="differ from the Hub"):
        _download(dest)
    assert mine.read_bytes() == b"my own fine-tune, not the Hub's file"
    assert not fake_hub.requests(method="GET")


def test_a_second_download_into_the_same_folder_is_refused_while_one_runs(fake_hub, tmp_path):
    from filelock import FileLock

    from app.downloads.downloader import LOCK_NAME

    dest = tmp_path / "m"
    dest.mkdir()
    with FileLock(dest / LOCK_NAME), pytest.raises(DestinationError, match="another download"):
        _download(dest)
    assert not fake_hub.state.log
    _download(dest)  # once the other one is over
    assert not (dest / LOCK_NAME).exists()
