"""`sd35-studio download` end to end in a subprocess, against the local Hub, with a private HF_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.downloads.conftest import GOOD_TOKEN, MEDIUM_REPO
from tests.downloads.fake_hub import FakeHub

ROOT = Path(__file__).resolve().parents[2]


def _run(
    args: list[str], hub: FakeHub | None, home: Path, token: str | None = None
) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("HF_", "HUGGING_FACE", "HTTP", "ALL_PROXY"))
    }
    env.update(HF_HOME=str(home), PYTHONPATH=str(ROOT))
    if hub is not None:
        env["HF_ENDPOINT"] = hub.url
    else:
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # discard port: any request would fail loudly
    if token is not None:
        env["HF_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "app", "download", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=240,
    )  # fmt: skip


def test_cli_downloads_saves_the_token_and_reports_a_ready_model_set(fake_hub, hf_home, tmp_path):
    from app.inference.checkpoints.model_set import locate_model_set

    dest = tmp_path / "medium"
    done = _run(
        ["--variant", "medium", "--dest", str(dest), "--token-from-env"], fake_hub, hf_home, GOOD_TOKEN
    )

    assert done.returncode == 0, done.stderr
    assert f"SD3.5 Medium from {MEDIUM_REPO}" in done.stdout
    assert (
        "sd3.5_medium.safetensors" in done.stdout and "≈5.11 GB" in done.stdout
    )  # the plan, before any request
    assert "Token from $HF_TOKEN checked and saved" in done.stdout
    assert "Done: sd3.5_medium (SD3.5 Medium) is ready in" in done.stdout
    assert (hf_home / "token").read_text().strip() == GOOD_TOKEN  # huggingface_hub's standard token store
    assert fake_hub.requests("hub", "GET")[0].path == "/api/whoami-v2"
    assert all(
        r.path.startswith(("/api/whoami-v2", f"/{MEDIUM_REPO}/", "/madebyollin/"))
        for r in fake_hub.requests("hub")
    )
    assert locate_model_set(dest).variant == "medium"


def test_cli_gated_refusal_prints_the_licence_page_and_exits_3(fake_hub, hf_home, tmp_path):
    done = _run(["--variant", "medium", "--dest", str(tmp_path / "m")], fake_hub, hf_home)

    assert done.returncode == 3
    assert "No Hugging Face token found" in done.stdout
    assert f"accept the licence on the model's page, https://huggingface.co/{MEDIUM_REPO}" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_dry_run_prints_the_plan_without_network(hf_home, tmp_path):
    dest = tmp_path / "large"
    done = _run(["--variant", "large", "--t5", "fp8", "--dest", str(dest), "--dry-run"], None, hf_home)

    assert done.returncode == 0, done.stderr
    assert "text_encoders/t5xxl_fp8_e4m3fn.safetensors" in done.stdout and "t5xxl_fp16" not in done.stdout
    assert "sd3.5_large.safetensors" in done.stdout and "≈16.5 GB" in done.stdout
    assert "the network was not used" in done.stdout
    assert not dest.exists()


def test_cli_token_from_env_without_hf_token_is_a_clear_error(hf_home, tmp_path):
    done = _run(["--variant", "medium", "--dest", str(tmp_path / "m"), "--token-from-env"], None, hf_home)
    assert done.returncode == 1
    assert "HF_TOKEN environment variable is empty or not set" in done.stderr


def test_cli_refused_token_is_not_saved(fake_hub, hf_home, tmp_path):
    dest = tmp_path / "m"
    done = _run(
        ["--variant", "medium", "--dest", str(dest), "--token-from-env"], fake_hub, hf_home, "hf_revoked"
    )

    assert done.returncode == 1
    assert "Hugging Face refused this token" in done.stderr and "settings/tokens" in done.stderr
    assert not (hf_home / "token").exists()
    assert not fake_hub.requests("cdn") and not dest.exists()  # nothing downloaded, nothing created


def test_cli_dry_run_with_controlnets_lists_them_and_their_licence(hf_home, tmp_path):
    dest = tmp_path / "large"
    args = ["--variant", "large", "--dest", str(dest), "--controlnet", "canny", "--controlnet", "depth"]
    done = _run([*args, "--dry-run"], None, hf_home)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    listed = [line.split() for line in lines if line.strip().startswith("controlnet ")]
    assert [row[:3] for row in listed] == [
        ["controlnet", "controlnets/sd3.5_large_controlnet_canny.safetensors", "≈8.65"],
        ["controlnet", "controlnets/sd3.5_large_controlnet_depth.safetensors", "≈8.65"],
    ]
    assert "https://huggingface.co/stabilityai/stable-diffusion-3.5-controlnets" in done.stdout
    refused = _run(
        ["--variant", "medium", "--dest", str(dest), "--controlnet", "blur", "--dry-run"], None, hf_home
    )
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "error: the SD3.5 ControlNets work with SD3.5 Large and Large Turbo only, not SD3.5 Medium"
    )
    assert not dest.exists()


def test_cli_dry_run_of_the_controlnets_alone(hf_home, tmp_path):
    dest = tmp_path / "large"
    done = _run(["--variant", "large", "--dest", str(dest), "--controlnet", "blur", "--controlnets-only", "--dry-run"],
                None, hf_home)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.splitlines()[0]
        == "SD3.5 Large ControlNets from stabilityai/stable-diffusion-3.5-controlnets"
    )
    assert "sd3.5_large.safetensors" not in done.stdout and "text_encoders" not in done.stdout
    assert "controlnets/sd3.5_large_controlnet_blur.safetensors" in done.stdout
    nothing = _run(
        ["--variant", "large", "--dest", str(dest), "--controlnets-only", "--dry-run"], None, hf_home
    )
    assert nothing.returncode == 1
    assert (
        nothing.stderr.strip()
        == "error: nothing to download: choose the model set or at least one ControlNet"
    )
