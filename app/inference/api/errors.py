"""The engine's exceptions. Every message says what went wrong and, where it can, what to do about it."""

from __future__ import annotations


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
