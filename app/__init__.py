"""SD3.5 Studio: a native desktop studio for Stable Diffusion 3.5."""

__version__ = "0.1.0"
