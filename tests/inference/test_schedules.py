"""Sigma schedules against the worked values of SD35_SAMPLING.md (sections 1, 3 and 6.2) and diffusers."""

from __future__ import annotations

import pytest
import torch

from app.inference.api.errors import InvalidRequestError
from app.inference.sampling.schedules import (
    SCHEDULERS,
    beta_cdf,
    beta_ppf,
    img2img_sigmas,
    make_sigmas,
    percent_to_sigma,
    sigma_table,
)

REFERENCE_28 = (
    "1.00000000, 0.98738068, 0.97410774, 0.96012926, 0.94538742, 0.92981797, 0.91334891, 0.89590025, "
    "0.87738192, 0.85769236, 0.83671665, 0.81432474, 0.79036838, 0.76467705, 0.73705590, 0.70727849, "
    "0.67508239, 0.64016014, 0.60215056, 0.56062502, 0.51507211, 0.46487603, 0.40928882, 0.34739265, "
    "0.27804878, 0.19982700, 0.11090573, 0.00892857, 0"
)
SGM_UNIFORM_20 = (
    "1.00000000, 0.98281199, 0.96440029, 0.94462919, 0.92334247, 0.90035909, 0.87546742, 0.84841973, "
    "0.81892329, 0.78662974, 0.75112110, 0.71189237, 0.66832668, 0.61966264, 0.56494963, 0.50298506, "
    "0.43222508, 0.35065380, 0.25558865, 0.14337938, 0"
)


def _literals(text: str) -> list[str]:
    return [s.strip() for s in text.split(",")]


def assert_float32_literals(actual: torch.Tensor, literals: list[str]) -> None:
    """Each float32 value prints as the spec's literal; where a literal's decimals identify one float32
    (values of 0.125 and more at 8 decimals), the value must also be that float32 bit for bit."""
    assert actual.dtype == torch.float32
    assert len(actual) == len(literals)
    for i, (value, lit) in enumerate(zip(actual.tolist(), literals, strict=True)):
        decimals = len(lit.split(".")[1]) if "." in lit else 0
        assert f"{value:.{decimals}f}" == lit, f"entry {i}: {value!r} != {lit}"
        if decimals == 8 and value >= 0.125:
            assert torch.equal(actual[i], torch.tensor(float(lit), dtype=torch.float32)), (
                f"entry {i} not exact"
            )


def test_sigma_table():
    table = sigma_table()
    assert table.shape == (1000,)
    assert table.dtype == torch.float32
    assert torch.equal(table[0], torch.tensor(0.002994012087583542, dtype=torch.float32))
    assert table[1].item() == pytest.approx(0.0059760958, abs=1e-10)
    assert table[998].item() == pytest.approx(0.9996664, abs=1e-7)
    assert table[999].item() == 1.0
    assert torch.all(table[1:] > table[:-1])


@pytest.mark.parametrize(
    ("scheduler", "expected"),
    [
        ("normal", "1.00000000, 0.85769236, 0.60215056, 0.00892857, 0"),
        ("sgm_uniform", "1.000000, 0.900359, 0.751121, 0.502985, 0"),
        ("simple", "1.00000000, 0.89999998, 0.75000000, 0.50000000, 0"),
        ("beta", "1.00000000, 0.93353480, 0.75074929, 0.39217135, 0"),
    ],
)
def test_four_steps(scheduler: str, expected: str):
    assert_float32_literals(make_sigmas(scheduler, 4), _literals(expected))


def test_reference_28_steps_full_list():
    assert_float32_literals(make_sigmas("normal", 28), _literals(REFERENCE_28))


def test_sgm_uniform_20_steps_full_list():
    assert_float32_literals(make_sigmas("sgm_uniform", 20), _literals(SGM_UNIFORM_20))


@pytest.mark.parametrize(
    ("scheduler", "steps", "head", "tail"),
    [
        ("normal", 28, "1.000000, 0.987381, 0.974108", "0.110906, 0.008929, 0"),
        ("sgm_uniform", 28, "1.000000, 0.987842, 0.975079", "0.107504, 0"),
        ("simple", 28, "1.000000, 0.988055, 0.975157", "0.100746, 0"),
        ("beta", 28, "1.000000, 0.997656, 0.992214", "0.023622, 0"),
        ("normal", 40, "1.00000000, 0.99133080, 0.98235577", "0.14650872, 0.08104575, 0.00892857, 0"),
        (
            "normal",
            50,
            "1.00000000, 0.99312443, 0.98605704, 0.97878975, 0.97131413, 0.96362096",
            "0.00892857, 0",
        ),
    ],
)
def test_head_and_tail(scheduler: str, steps: int, head: str, tail: str):
    sigmas = make_sigmas(scheduler, steps)
    assert len(sigmas) == steps + 1
    head_l, tail_l = _literals(head), _literals(tail)
    assert_float32_literals(sigmas[: len(head_l)], head_l)
    assert_float32_literals(sigmas[-len(tail_l) :], tail_l)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("steps", [1, 2, 7, 28, 60])
def test_every_schedule_is_decreasing_and_ends_at_zero(scheduler: str, steps: int):
    sigmas = make_sigmas(scheduler, steps)
    assert sigmas.dtype == torch.float32
    assert sigmas.ndim == 1
    assert sigmas[0].item() == 1.0
    assert sigmas[-1].item() == 0.0
    assert torch.all(sigmas[1:] < sigmas[:-1])
    assert len(sigmas) == steps + 1


def test_beta_skips_duplicate_entries_with_many_steps():
    sigmas = make_sigmas("beta", 1000)
    assert len(sigmas) < 1001
    assert torch.all(sigmas[1:] < sigmas[:-1])


@pytest.mark.parametrize("steps", [4, 28, 40, 50])
def test_normal_agrees_with_diffusers(steps: int):
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    scheduler.set_timesteps(steps)
    expected = scheduler.sigmas.to(torch.float32)
    got = make_sigmas("normal", steps)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1.3e-7


def test_beta_inverse_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    for p in (1e-9, 0.01, 0.25, 0.5, 0.6, 0.75, 0.9999):
        assert beta_ppf(p, 0.6, 0.6) == pytest.approx(float(stats.beta.ppf(p, 0.6, 0.6)), abs=1e-14)
        assert beta_cdf(beta_ppf(p, 0.6, 0.6), 0.6, 0.6) == pytest.approx(p, rel=1e-12)
    assert beta_ppf(0.5, 0.6, 0.6) == 0.5  # exact: 0.5 * 999 = 499.5 rounds (half to even) to 500


def test_beta_inverse_without_scipy():
    assert (beta_ppf(0.0, 0.6, 0.6), beta_ppf(1.0, 0.6, 0.6)) == (0.0, 1.0)
    assert beta_cdf(0.5, 0.6, 0.6) == pytest.approx(0.5, abs=1e-15)
    assert beta_cdf(0.3, 1.0, 1.0) == pytest.approx(0.3, abs=1e-15)  # uniform
    assert beta_cdf(0.3, 2.0, 1.0) == pytest.approx(0.09, abs=1e-15)  # x^2
    assert beta_ppf(0.2, 0.6, 0.6) == pytest.approx(1.0 - beta_ppf(0.8, 0.6, 0.6), abs=1e-15)


@pytest.mark.parametrize(
    ("percent", "sigma"),
    [(0.0, 1.0), (-0.5, 1.0), (1.0, 0.0), (1.5, 0.0), (0.01, 0.99664430), (0.1, 0.96428571),
     (0.15, 0.94444444), (0.2, 0.92307692), (0.5, 0.75)],
)  # fmt: skip
def test_percent_to_sigma(percent: float, sigma: float):
    assert percent_to_sigma(percent) == pytest.approx(sigma, abs=5e-9)


@pytest.mark.parametrize(
    ("steps", "denoise", "remaining", "first"),
    [(40, 0.8, 33, 0.93226993), (28, 0.6, 17, 0.81432474), (50, 0.75, 38, None), (28, 1.0, 28, 1.0)],
)
def test_img2img_truncation_follows_the_reference(
    steps: int, denoise: float, remaining: int, first: float | None
):
    sigmas = img2img_sigmas(make_sigmas("normal", steps), denoise)
    assert len(sigmas) - 1 == remaining
    if first is not None:
        assert f"{sigmas[0].item():.8f}" == f"{first:.8f}"
    assert sigmas[-1].item() == 0.0


def test_invalid_requests():
    with pytest.raises(InvalidRequestError, match="karras"):
        make_sigmas("karras", 4)
    with pytest.raises(InvalidRequestError):
        make_sigmas("normal", 0)
    with pytest.raises(InvalidRequestError):
        img2img_sigmas(make_sigmas("normal", 4), 0.0)
    with pytest.raises(InvalidRequestError):
        img2img_sigmas(make_sigmas("normal", 4), 1.5)
    assert len(img2img_sigmas(make_sigmas("normal", 4), 0.1)) == 2  # int(4 * 0.9) = 3 dropped, one step left
    with pytest.raises(InvalidRequestError, match="no step"):
        img2img_sigmas(make_sigmas("normal", 4), 1e-17)  # 1 - 1e-17 == 1.0: all four dropped
