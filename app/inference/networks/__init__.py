"""The networks as pure torch modules (MMDiT / MMDiT-X and its adaLN table, VAE, TAESD, CLIP/T5 text encoders),
built from configs inferred from tensor shapes; no file reading here (that is checkpoints/*_loading.py)."""
