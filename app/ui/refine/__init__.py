"""Refine in the window: image to image, inpainting, outpainting and the hires fix (issue 14)."""
