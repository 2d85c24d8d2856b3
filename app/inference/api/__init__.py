"""Torch-free contracts of the engine: the request, events, errors, variants, cancel token and the Session protocol."""
