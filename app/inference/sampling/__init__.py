"""Schedules, samplers, guidance and previews: plain functions over tensors."""
