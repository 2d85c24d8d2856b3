"""Samplers and noise against the worked values of SD35_SAMPLING.md (sections 2.3, 2.4 and 4) and diffusers.

The coefficient tests run the samplers on float64 basis vectors: the start latent is e_0, the denoiser
returns e_{1+i} at step i and the noise source e_{N+1+k} at draw k. Sigma arithmetic stays float32 (0-d
tensors), so each component of the result is a product of the sampler's float32 coefficients, read off
without rounding noise.
"""

from __future__ import annotations

import pytest
import torch

from app.inference.api.errors import GenerationCancelled, InvalidRequestError
from app.inference.sampling.samplers import (
    SAMPLERS,
    ancestral_noise_sampler,
    make_noise,
    sample_dpmpp_2m,
    sample_euler,
    sample_euler_ancestral,
)
from app.inference.sampling.schedules import make_sigmas

REL = 1e-6
ABS = 5e-8  # the spec prints 8 decimals: small coefficients are compared to that precision


def _basis_run(sampler, steps: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Run `sampler` on the basis problem; returns the latent seen at every step, and the final latent."""
    size = 2 * steps + 2
    eye = torch.eye(size, dtype=torch.float64)
    seen: list[torch.Tensor] = []
    draws = iter(range(steps + 1, size))

    def denoise(x: torch.Tensor, sigma: torch.Tensor, i: int) -> torch.Tensor:
        assert sigma.ndim == 0
        assert sigma.dtype == torch.float32
        seen.append(x.clone())
        return eye[1 + i].clone()

    out = sampler(
        denoise, eye[0].clone(), make_sigmas("normal", steps), noise=lambda: eye[next(draws)].clone()
    )
    return [*seen, out], out


def _dpm_step(xs: list[torch.Tensor], i: int) -> tuple[float, float, float]:
    """(a, weight of D_i, weight of D_{i-1}) of step i: x_{i+1} = a*x_i + c*(w1*D_i + w0*D_{i-1}), where c is
    -expm1(-h) (~ 1 - a) and w1 + w0 = 1."""
    before, after = xs[i], xs[i + 1]
    a = (after[0] / before[0]).item()
    c_w1 = after[1 + i].item()
    c_w0 = (after[i] - a * before[i]).item()
    c = c_w1 + c_w0
    assert c == pytest.approx(1 - a, rel=1e-5)
    return a, c_w1 / c, c_w0 / c


# --- DPM-Solver++(2M) -------------------------------------------------------------------------------------


def test_dpmpp_2m_coefficients_four_steps():
    xs, out = _basis_run(sample_dpmpp_2m, 4)
    a0 = xs[1][0].item()
    assert a0 == pytest.approx(0.85769236, rel=REL)
    assert xs[1][1].item() == pytest.approx(1 - 0.85769236, rel=REL)  # step 0 is first order
    assert _dpm_step(xs, 1) == pytest.approx((0.70205891, 2.15216732, -1.15216732), rel=REL)
    assert _dpm_step(xs, 2) == pytest.approx((0.01482781, 6.95250082, -5.95250082), rel=REL)
    assert torch.equal(out, torch.eye(10, dtype=torch.float64)[4])  # last step: x = D_3 exactly


def test_dpmpp_2m_coefficients_28_steps():
    xs, _ = _basis_run(sample_dpmpp_2m, 28)
    assert _dpm_step(xs, 1) == pytest.approx((0.98655742, 1.53284085, -0.53284085), rel=REL)
    assert _dpm_step(xs, 2) == pytest.approx((0.98564994, 1.53399813, -0.53399813), rel=REL)


def test_dpmpp_2m_uses_the_reference_float32_form():
    """exp(-t')/exp(-t) and -expm1(-h) on float32 t = -log(sigma), not sigma'/sigma and 1 - sigma'/sigma
    (which differ in the last bit in most steps of a 50-step schedule)."""
    steps = 50
    sigmas = make_sigmas("normal", steps)
    xs, _ = _basis_run(sample_dpmpp_2m, steps)
    for i in range(steps - 1):
        t, t_next = sigmas[i].log().neg(), sigmas[i + 1].log().neg()
        h = t_next - t
        x_coeff = t_next.neg().exp() / t.neg().exp()
        d_coeff = -((-h).expm1())
        assert torch.equal((xs[i + 1][0] / xs[i][0]).float(), x_coeff), f"step {i}"
        if i == 0:
            assert xs[1][1].item() == d_coeff.item()
        else:
            r = (t - sigmas[i - 1].log().neg()) / h
            w1 = 1 + 1 / (2 * r)
            assert xs[i + 1][1 + i].item() == d_coeff.item() * w1.item(), f"step {i}"


def test_dpmpp_2m_last_step_returns_the_denoised_tensor_exactly():
    target = torch.randn(1, 4, 3, 5, generator=torch.Generator().manual_seed(0))
    x = torch.randn(1, 4, 3, 5, generator=torch.Generator().manual_seed(1))
    out = sample_dpmpp_2m(lambda x, s, i: target * (1 + 0.01 * i), x, make_sigmas("normal", 6))
    assert torch.equal(out, target * 1.05)


# --- Euler ------------------------------------------------------------------------------------------------


def test_euler_steps_are_convex_moves_towards_the_denoised():
    sigmas = make_sigmas("normal", 4)
    xs, out = _basis_run(sample_euler, 4)
    for i, a_spec in enumerate((0.85769236, 0.70205891, 0.01482781)):
        # the reference's order: d = (x - D)/sigma, dt = sigma' - sigma in float32, x = x + d*dt
        dt = (sigmas[i + 1] - sigmas[i]).double()
        a = 1 + dt / sigmas[i].double()
        assert (xs[i + 1][0] / xs[i][0]).item() == pytest.approx(a.item(), rel=1e-12)
        assert xs[i + 1][1 + i].item() == pytest.approx(-(dt / sigmas[i].double()).item(), rel=1e-12)
        assert a.item() == pytest.approx(a_spec, rel=REL, abs=ABS)
    assert torch.allclose(out, torch.eye(10, dtype=torch.float64)[4], atol=1e-6)  # the last step lands on D


def test_euler_matches_diffusers_flow_match_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    def velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return torch.tanh(1.5 * x) * (1 + sigma) - 0.3 * x + 0.1

    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    scheduler.set_timesteps(8)
    x0 = torch.randn(1, 16, 6, 4, generator=torch.Generator().manual_seed(5))
    expected = x0.clone()
    for i, t in enumerate(scheduler.timesteps):
        v = velocity(expected, scheduler.sigmas[i].item())
        expected = scheduler.step(v, t, expected).prev_sample

    def denoise(x: torch.Tensor, sigma: torch.Tensor, i: int) -> torch.Tensor:
        return x - sigma * velocity(x, sigma.item())  # D = x - sigma * v

    got = sample_euler(denoise, x0.clone(), scheduler.sigmas.to(torch.float32))
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)


# --- Euler ancestral (RF) ---------------------------------------------------------------------------------


def test_euler_ancestral_coefficients_four_steps():
    xs, out = _basis_run(sample_euler_ancestral, 4)
    # (sigma_down / sigma, 1 - that, alpha_next / alpha_down, renoise coefficient) per step, from the spec
    expected = [
        (0.73563617, 0.26436383, 0.53830224, 0.76080513),
        (0.49288672, 0.50711328, 0.68920940, 0.52696747),
        (0.00021986, 0.99978012, 0.99120259, 0.00892761),
    ]
    for i, (down, to_d, scale, renoise) in enumerate(expected):
        before, after = xs[i], xs[i + 1]
        assert (after[0] / before[0]).item() == pytest.approx(scale * down, rel=REL, abs=ABS)
        assert after[1 + i].item() == pytest.approx(scale * to_d, rel=REL, abs=ABS)
        assert after[5 + i].item() == pytest.approx(renoise, rel=REL, abs=ABS)  # this step's noise draw
    assert torch.equal(out, torch.eye(10, dtype=torch.float64)[4])  # last step: x = D_3, no noise drawn


def test_euler_ancestral_needs_a_noise_source():
    with pytest.raises(ValueError, match="noise"):
        sample_euler_ancestral(lambda x, s, i: x, torch.zeros(2), make_sigmas("normal", 2))


def test_euler_ancestral_is_reproducible_from_the_seed():
    shape = (1, 16, 4, 4)

    def run() -> torch.Tensor:
        x = make_noise(7, shape)
        return sample_euler_ancestral(lambda x, s, i: 0.5 * x, x, make_sigmas("normal", 5),
                                      noise=ancestral_noise_sampler(7, shape, "cpu"))  # fmt: skip

    assert torch.equal(run(), run())


# --- callbacks --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_on_step_sees_every_denoised_tensor(name: str):
    produced: list[torch.Tensor] = []
    calls: list[tuple[int, torch.Tensor]] = []

    def denoise(x: torch.Tensor, sigma: torch.Tensor, i: int) -> torch.Tensor:
        produced.append(0.9 * x)
        return produced[-1]

    x = make_noise(0, (1, 16, 2, 2))
    SAMPLERS[name](denoise, x, make_sigmas("normal", 5), on_step=lambda i, d: calls.append((i, d)),
                   noise=ancestral_noise_sampler(0, x.shape, "cpu"))  # fmt: skip
    assert [i for i, _ in calls] == [0, 1, 2, 3, 4]
    assert all(d is p for (_, d), p in zip(calls, produced, strict=True))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_exception_in_on_step_propagates(name: str):
    evaluations: list[int] = []

    def denoise(x: torch.Tensor, sigma: torch.Tensor, i: int) -> torch.Tensor:
        evaluations.append(i)
        return 0.5 * x

    def on_step(i: int, denoised: torch.Tensor) -> None:
        if i == 2:
            raise GenerationCancelled

    x = make_noise(0, (1, 16, 2, 2))
    with pytest.raises(GenerationCancelled):
        SAMPLERS[name](denoise, x, make_sigmas("normal", 6), on_step=on_step,
                       noise=ancestral_noise_sampler(0, x.shape, "cpu"))  # fmt: skip
    assert evaluations == [0, 1, 2]


def test_sampler_names():
    assert set(SAMPLERS) == {"euler", "dpmpp_2m", "euler_ancestral"}


# --- noise ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "first", "total"),
    [
        (0, [-1.1258398, -1.1523602, -0.2505786, -0.4338788, 0.8487104], -888.92059),
        (42, [1.9269153, 1.4872841, 0.9007172, -2.1055210, 0.6784185], -62.913128),
    ],
)
def test_noise_fingerprints(seed: int, first: list[float], total: float):
    noise = make_noise(seed, (1, 16, 128, 128))
    assert noise.dtype == torch.float32
    assert noise.device.type == "cpu"
    assert noise.flatten()[:5].tolist() == pytest.approx(first, abs=1e-7)
    assert noise.double().sum().item() == pytest.approx(total, abs=2e-3)


def test_noise_seeds_are_unsigned_64_bit():
    shape = (1, 16, 3, 3)
    big = 2**64 - 1
    assert torch.equal(
        make_noise(big, shape), torch.randn(shape, generator=torch.Generator().manual_seed(-1))
    )
    assert torch.equal(make_noise(2**63 + 5, shape),
                       torch.randn(shape, generator=torch.Generator().manual_seed(-(2**63) + 5)))  # fmt: skip
    for bad in (-1, 2**64, 1.5, True):
        with pytest.raises(InvalidRequestError):
            make_noise(bad, shape)


def test_ancestral_noise_uses_seed_plus_one_and_wraps():
    shape = (1, 16, 3, 3)
    draw = ancestral_noise_sampler(41, shape, "cpu")
    first, second = draw(), draw()
    gen = torch.Generator().manual_seed(42)
    assert torch.equal(first, torch.randn(shape, generator=gen))
    assert torch.equal(second, torch.randn(shape, generator=gen))
    assert torch.equal(first, make_noise(42, shape))
    assert torch.equal(ancestral_noise_sampler(2**64 - 1, shape, "cpu")(), make_noise(0, shape))
