"""The networks as pure torch modules (MMDiT / MMDiT-X, VAE, TAESD); no file reading here."""
