"""The canvas: the live preview and finished image, zoom/pan and the step scrubber."""
