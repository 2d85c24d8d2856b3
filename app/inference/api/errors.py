"""The engine's exceptions. Every message says what went wrong and, where it can, what to do about it."""

from __future__ import annotations

from enum import StrEnum


class InferenceError(Exception):
    """Base class of every error the engine reports to a user."""


class ModelFileError(InferenceError):
    """A model file is missing, truncated, corrupt or not a safetensors file."""


class CheckpointMismatchError(InferenceError):
    """A file is readable but does not hold the tensors the network needs (wrong keys or shapes)."""


class UnsupportedModelError(InferenceError):
    """A checkpoint of another architecture (SDXL, FLUX, ...) or an unsupported SD3 family member."""


class MissingComponentError(InferenceError):
    """A text encoder, tokenizer or VAE that the job needs cannot be found."""


class InvalidRequestError(InferenceError):
    """A generation parameter is out of range (size, steps, sampler name, ...)."""


class GenerationCancelled(Exception):
    """Raised inside a job when its cancel token is set; never reported as a failure."""


class FailureKind(StrEnum):
    """Why a job or an image failed: decides what the user is offered (Locate…, Memory settings…, ...).

    A `StrEnum`, so it prints and serialises (`--json`) as the plain word."""

    MODEL = "model"  # a model file is missing, damaged or of another architecture
    MEMORY = "memory"  # the device or the host ran out of memory
    REQUEST = "request"  # a parameter is out of range
    NON_FINITE = "non-finite"  # a network produced NaN/Inf (damaged weights or too low a precision)
    IO = "io"  # a file could not be read or written
    INTERNAL = "internal"  # a bug: details are in the log
    CONNECTION = (
        "connection"  # a remote engine (ComfyUI server) could not be reached, dropped out or misbehaved
    )


def failure_kind(exc: InferenceError) -> FailureKind:
    """The kind of an engine error the user can act on."""
    if isinstance(exc, InvalidRequestError):
        return FailureKind.REQUEST
    return FailureKind.MODEL
