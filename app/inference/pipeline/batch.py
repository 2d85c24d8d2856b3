"""Sampling one batch of seeds: the start noise, the sampler loop, and what each step reports.

A `BatchRunner` holds everything a batch needs (`Sampling`, shared by the job's batches, and its `Batch`).
Images leave a batch as they go (cancelled by the user, or failed with NaN/Inf): the network then runs for
the images still wanted only, and a batch with none left runs the rest of the schedule as cheap no-op steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from app.inference.api.cancel import CancelToken
from app.inference.api.errors import FailureKind
from app.inference.api.events import Event, ImageCancelled, ImageFailed, StepUpdate
from app.inference.sampling.guidance import GuidedDenoiser
from app.inference.sampling.masked import DifferentialThreshold, MaskedDenoiser
from app.inference.sampling.preview import PreviewBudget, PreviewDecoder
from app.inference.sampling.samplers import SAMPLERS, NoiseSource, ancestral_noise_sampler, make_noise


@dataclass(frozen=True, slots=True)
class Sampling:
    """What every batch of a job shares: the guided denoiser and its schedule, and where sampling starts."""

    denoiser: GuidedDenoiser  # (x, sigma, step) -> guided denoised estimate; holds the schedule on the device
    sigmas: torch.Tensor  # (N+1,) float32 on the CPU, ending with 0 (img2img: the tail of the full schedule)
    sampler: str  # a name in SAMPLERS
    latent_shape: tuple[int, int, int, int]  # (1, 16, h, w) of one image
    init_latent: torch.Tensor | None  # (1 or B, 16, h, w) model space on the CPU: img2img's start, else None
    device: torch.device
    precision: str  # how the networks compute, in words (e.g. "bfloat16"), for the NaN advice
    mask: torch.Tensor | None = None  # (1, 1, h, w) in [0, 1], 1 = regenerate: masked sampling (masked.py)
    threshold: DifferentialThreshold | None = None  # a soft mask's differential-diffusion rule
    step_offset: int = 0  # steps of the image's earlier passes (a hires job's first pass)
    total_steps: int | None = None  # steps of all the image's passes, as its events count them (None: steps)

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1


@dataclass(slots=True)
class Batch:
    """Images sampled together: their indices in the job, their seeds, and which are still wanted."""

    indices: list[int]
    seeds: list[int]
    active: list[bool]

    @classmethod
    def of(cls, first: int, size: int, seed: int) -> Batch:
        """Images first .. first+size-1 of a job whose first image has seed `seed`."""
        indices = list(range(first, first + size))
        return cls(indices, [seed + k for k in indices], [True] * size)

    def live(self) -> Iterator[tuple[int, int, int]]:
        """(row, image index, seed) of every image still in the batch."""
        for row, (index, seed) in enumerate(zip(self.indices, self.seeds, strict=True)):
            if self.active[row]:
                yield row, index, seed


class StepClock:
    """Rate and ETA of a batch's sampling, and the time of each step without what reporting it took."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.started = self.last = time.perf_counter()

    def lap(self) -> float:
        """Seconds since the previous step was reported: this step's network and sampler time."""
        return time.perf_counter() - self.last

    def progress(self, done: int) -> tuple[float, float, float | None]:
        """(seconds elapsed, steps per second, seconds left or None) after `done` steps."""
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.steps - done) / rate if rate > 0 else None
        return elapsed, rate, eta

    def resume(self) -> None:
        """The step's reporting is over: the next lap starts now."""
        self.last = time.perf_counter()


class NonFiniteWatch:
    """The first step at which each image's denoised estimate held NaN or Inf.

    Tracked on the device, so watching every step adds no host-device sync; `read` it where the host waits
    anyway (on the CPU, after a preview, at the end of the batch)."""

    def __init__(self, size: int, device: torch.device) -> None:
        self.first_step = torch.full((size,), -1, dtype=torch.int64, device=device)  # -1: finite so far
        self.was_nan = torch.zeros(size, dtype=torch.bool, device=device)  # NaN (else Inf) at first_step

    def update(self, step: int, denoised: torch.Tensor) -> None:
        flat = denoised.flatten(1)  # (B, 16*h*w)
        new = ~torch.isfinite(flat).all(dim=1) & (self.first_step < 0)
        self.first_step = torch.where(new, step, self.first_step)
        self.was_nan = torch.where(new, torch.isnan(flat).any(dim=1), self.was_nan)

    def read(self) -> list[tuple[int, bool] | None]:
        """Per image: None while finite, else (0-based step, NaN rather than Inf)."""
        steps, nans = self.first_step.tolist(), self.was_nan.tolist()
        return [None if s < 0 else (s, n) for s, n in zip(steps, nans, strict=True)]


def non_finite_message(what: str, when: str, precision: str) -> str:
    """`the model produced NaN at step 3: the weights may be damaged or ...`"""
    if precision == "float32":
        advice = "the weights may be damaged: check the model file or download it again"
    else:
        advice = f"the weights may be damaged or the precision ({precision}) too low — try float32"
    return f"{what} {when}: {advice}"


class BatchRunner:
    """Samples one `Batch` of a job and reports its steps; `run` returns the final latents."""

    def __init__(
        self,
        sampling: Sampling,
        batch: Batch,
        cancel: CancelToken,
        emit: Callable[[Event], None],
        preview: PreviewDecoder | None,
        preview_every: int = 1,
    ) -> None:
        self.sampling = sampling
        self.batch = batch
        self.cancel = cancel
        self.emit = emit
        self.preview = preview
        self.budget = PreviewBudget(every=preview_every)
        self.clock = StepClock(sampling.steps)
        self.watch = NonFiniteWatch(len(batch.indices), sampling.device)
        self.sigmas_host = sampling.sigmas.tolist()

    def run(self) -> torch.Tensor:
        """(B, 16, h, w) final latents in model space; rows of images that left the batch are not meaningful."""
        s = self.sampling
        extra = {"noise": self._ancestral_noise()} if s.sampler == "euler_ancestral" else {}
        with torch.inference_mode():
            noise = self._noise()
            denoise = self._denoise
            if s.mask is not None:  # the same noise as the start's, each image its own
                denoise = MaskedDenoiser(denoise, s.init_latent, noise, s.mask, s.threshold)
            x = SAMPLERS[s.sampler](
                denoise, self._start(noise), s.denoiser.sigmas, on_step=self._on_step, **extra
            )
        self.cancel.raise_if_cancelled()
        self._drop_cancelled()
        self._drop_non_finite()
        return x

    # ------------------------------------------------------------------------------------------ the start

    def _noise(self) -> torch.Tensor:
        s = self.sampling
        # (B, 16, h, w): each image's noise drawn on the CPU from its own seed, then moved
        return torch.cat([make_noise(seed, s.latent_shape) for seed in self.batch.seeds]).to(s.device)

    def _start(self, noise: torch.Tensor) -> torch.Tensor:
        s = self.sampling
        if s.init_latent is None:
            return noise
        sigma0 = self.sigmas_host[0]
        return sigma0 * noise + (1.0 - sigma0) * s.init_latent.to(s.device)

    def _ancestral_noise(self) -> NoiseSource:
        draws = [ancestral_noise_sampler(seed, self.sampling.latent_shape) for seed in self.batch.seeds]
        device = self.sampling.device
        return lambda: torch.cat([draw() for draw in draws]).to(device)

    # ------------------------------------------------------------------------------------------ each step

    def _denoise(self, x: torch.Tensor, sigma: torch.Tensor, i: int) -> torch.Tensor:
        # A cancelled image leaves the batch before the next network call: only wanted images are computed.
        self.cancel.raise_if_cancelled()
        self._drop_cancelled()
        keep = [row for row, _, _ in self.batch.live()]
        if len(keep) == len(self.batch.active):
            return self.sampling.denoiser(x, sigma, i)
        out = x.clone()  # D = x for an image that left: it moves no more and is never decoded
        if keep:
            out[keep] = self.sampling.denoiser(x[keep], sigma, i)
        return out

    def _on_step(self, i: int, denoised: torch.Tensor) -> None:
        self.cancel.raise_if_cancelled()
        self.budget.add_step_time(self.clock.lap())
        self.watch.update(i, denoised)
        images = None
        if self.preview is not None and any(self.batch.active) and self.budget.should_decode(i):
            started = time.perf_counter()
            images = self.preview(denoised)  # waits for the device: reading the watch costs nothing more
            self.budget.record(time.perf_counter() - started)
        if images is not None or self.sampling.device.type == "cpu":
            self._drop_non_finite()
        elapsed, rate, eta = self.clock.progress(i + 1)
        sigma = self.sigmas_host[i]
        s = self.sampling
        total = s.total_steps or s.steps
        if eta is not None and rate > 0:  # the passes still to come, at this pass's rate
            eta += (total - s.step_offset - s.steps) / rate
        for row, index, seed in self.batch.live():
            preview = None if images is None else images[row]
            self.emit(
                StepUpdate(index, seed, s.step_offset + i + 1, total, sigma, elapsed, rate, eta, preview)
            )
        self.clock.resume()

    # ------------------------------------------------------------------------------------------ leaving

    def _drop_cancelled(self) -> None:
        for row, index, seed in list(self.batch.live()):
            if self.cancel.image_cancelled(index):
                self.batch.active[row] = False
                self.emit(ImageCancelled(index, seed))

    def _drop_non_finite(self) -> None:
        failures = self.watch.read()
        for row, index, seed in list(self.batch.live()):
            if failures[row] is not None:
                step, nan = failures[row]
                self.batch.active[row] = False
                what = f"the model produced {'NaN' if nan else 'infinite values'}"
                message = non_finite_message(what, f"at step {step + 1}", self.sampling.precision)
                self.emit(ImageFailed(index, seed, message, FailureKind.NON_FINITE))
