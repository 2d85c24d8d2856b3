"""Settings ▸ Engines: ComfyUI servers as the window's engine."""
