"""Control images: the control latent of a fixed PNG per ControlNet type equals §2's encoding (Lanczos resize,
per-type scaling, posterior mean from diffusers' AutoencoderKL on the same tensors, latent scaling), and the
preprocessors (blur against scipy, canny's thin edges and hysteresis, depth's invert)."""

import numpy as np
import pytest
import torch
from PIL import Image

from app.inference.api.control import ControlPreprocess
from app.inference.api.errors import InvalidRequestError
from app.inference.checkpoints.vae_loading import load_vae
from app.inference.control.encoding import (
    control_map,
    control_map_pixels,
    encode_control_image,
    encoder_input,
)
from app.inference.control.preprocess import canny, depth_map, gaussian_blur
from tests.factory.diffusers_oracle import diffusers_vae
from tests.factory.vae_model import write_tiny_vae

SIZE = (48, 32)  # generation width x height


@pytest.fixture(scope="module")
def vae_state(tmp_path_factory):
    path = tmp_path_factory.mktemp("vae") / "vae.safetensors"
    state = write_tiny_vae(path, seed=2, dtype=torch.float32)
    return path, state


@pytest.fixture(scope="module")
def png(tmp_path_factory):
    """A fixed 40 x 56 RGB picture: gradients and a bright square (not the generation size: it is resized)."""
    yy, xx = np.mgrid[0:56, 0:40]
    rgb = np.stack([xx * 6, yy * 4, (xx + yy) * 2], axis=-1) % 256
    rgb[20:36, 10:26] = 250
    path = tmp_path_factory.mktemp("img") / "control.png"
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


def _spec_latent(vae_oracle, png, control_type):
    """§2 written out: Lanczos to the generation size, [0, 1], per-type scaling, posterior mean, scaling."""
    with Image.open(png) as im:
        x = np.asarray(im.resize(SIZE, Image.Resampling.LANCZOS).convert("RGB")).astype(np.float32) / 255.0
    x = torch.from_numpy(x).permute(2, 0, 1)[None]
    fed = x * 255 * 0.5 + 0.5 if control_type == "canny" else 2 * x - 1
    with torch.no_grad():
        mean = vae_oracle.encode(fed).latent_dist.mean
    return (mean - 0.0609) * 1.5305


@pytest.mark.parametrize("control_type", ["blur", "canny", "depth"])
def test_control_latent_follows_the_spec(vae_state, png, control_type):
    path, state = vae_state
    ours = load_vae(path, prefix="first_stage_model.", dtype=torch.float32)
    oracle = diffusers_vae(state)
    latent = encode_control_image(ours, png, SIZE, ControlPreprocess("none"), control_type)
    expected = _spec_latent(oracle, png, control_type)
    assert latent.shape == (1, 16, 4, 6)
    assert torch.allclose(latent, expected, atol=1e-4, rtol=1e-4)


def test_types_are_scaled_differently():
    x = torch.tensor([0.0, 0.5, 1.0])
    assert encoder_input(x, "canny").tolist() == [0.5, 64.25, 128.0]  # (sic) x * 255 * 0.5 + 0.5
    assert encoder_input(x, "blur").tolist() == [-1.0, 0.0, 1.0]
    assert encoder_input(x, "depth").tolist() == [-1.0, 0.0, 1.0]


def test_unreadable_control_image_is_one_sentence(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InvalidRequestError, match="cannot read the control image"):
        control_map(bad, SIZE, ControlPreprocess())
    with pytest.raises(InvalidRequestError, match="cannot read the control image"):
        control_map(tmp_path / "missing.png", SIZE, ControlPreprocess())


@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_blur_is_a_gaussian(sigma):
    ndimage = pytest.importorskip("scipy.ndimage")
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 30, 40, generator=gen)
    ours = gaussian_blur(img, sigma)
    ref = ndimage.gaussian_filter(img[0].numpy(), sigma=(0, sigma, sigma), mode="nearest", truncate=3.0)
    assert np.allclose(ours[0].numpy(), ref, atol=1e-5)


def _square(h=32, w=32, lo=0.1, hi=0.9):
    img = torch.full((1, 3, h, w), lo)
    img[..., 8:24, 10:22] = hi
    return img


def test_canny_traces_the_square_with_thin_edges():
    edges = canny(_square(), 100, 200)[0, 0]
    assert edges.shape == (32, 32) and set(edges.unique().tolist()) == {0.0, 1.0}
    rows, cols = torch.nonzero(edges, as_tuple=True)
    # the contour hugs the square's border (one pixel either side of it) and closes around it
    assert rows.min() >= 7 and rows.max() <= 24 and cols.min() >= 9 and cols.max() <= 22
    for r in range(10, 22):
        assert edges[r, 8:13].sum() >= 1 and edges[r, 19:24].sum() >= 1
    for c in range(12, 20):
        assert edges[6:11, c].sum() >= 1 and edges[21:26, c].sum() >= 1
    # thin: no 2 x 2 block of edge pixels along the straight sides (non-maximum suppression)
    block = edges[10:22, :].unfold(0, 2, 1).unfold(1, 2, 1).sum(dim=(-1, -2))
    assert block.max() < 4
    # nothing inside or far outside
    assert edges[12:20, 14:18].sum() == 0 and edges[:5].sum() == 0


def test_canny_thresholds_and_hysteresis():
    strong = _square(lo=0.1, hi=0.9)  # L1 Sobel magnitude: 4 * 0.8 * 255 = 816 on the sides, 1224 at corners
    assert canny(strong, 1300, 1400).sum() == 0  # above every gradient: no edge
    assert canny(strong, 900, 1000).sum() > 0  # the corners only
    assert canny(strong, 100, 200).sum() > 0
    # A faint square (step 0.2: magnitude ~204) joined to a strong one: kept only through hysteresis.
    img = torch.full((1, 3, 32, 48), 0.1)
    img[..., 8:24, 4:20] = 0.9  # strong
    img[..., 8:24, 20:40] = 0.3  # faint, touching the strong one
    faint_only = torch.full((1, 3, 32, 48), 0.1)
    faint_only[..., 8:24, 20:40] = 0.3
    e = canny(img, 100, 500)[0, 0]
    assert e[8:24, 30].sum() + e[4:12, 30].sum() > 0  # the faint square's top edge, connected: kept
    assert canny(faint_only, 100, 500).sum() == 0  # alone it has no strong pixel: dropped
    assert canny(faint_only, 100, 150).sum() > 0  # and with a lower high threshold it is found


def test_depth_map_is_grey_and_inverts():
    img = torch.zeros(1, 3, 2, 2)
    img[..., 0, 0] = 1.0
    d = depth_map(img, invert=False)
    assert d.shape == (1, 3, 2, 2) and torch.allclose(d[0, :, 0, 0], torch.ones(3))
    assert torch.allclose(depth_map(img, invert=True), 1.0 - d)


def test_preprocess_runs_on_the_resized_image(png):
    m = control_map(png, SIZE, ControlPreprocess("canny", canny_low=50, canny_high=150))
    assert m.shape == (1, 3, 32, 48) and m.sum() > 0
    blurred = control_map(png, SIZE, ControlPreprocess("blur", blur_radius=3))
    plain = control_map(png, SIZE, ControlPreprocess("none"))
    assert blurred.shape == plain.shape and not torch.allclose(blurred, plain)
    assert (blurred.diff(dim=-1).abs().mean() < plain.diff(dim=-1).abs().mean()).item()


def test_map_preview_pixels(png):
    pixels = control_map_pixels(png, SIZE, ControlPreprocess("canny", canny_low=50, canny_high=150))
    assert pixels.shape == (32, 48, 3) and pixels.dtype.name == "uint8"
    assert set(np.unique(pixels).tolist()) == {0, 255}  # white edges on black
