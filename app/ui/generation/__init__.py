"""Running jobs from the window: the inference worker thread, the job queue and output files."""
