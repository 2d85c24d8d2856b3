"""Devices and memory: plans, offload and streaming, decoding within free memory."""
