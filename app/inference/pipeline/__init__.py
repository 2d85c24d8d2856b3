"""The generation job: loaded models (engine) and the session that runs a request phase by phase."""
