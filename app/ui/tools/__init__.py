"""Multi-image tools: Compare Seeds and the X/Y plot."""
