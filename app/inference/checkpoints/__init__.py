"""Everything that reads model files: headers, formats, fp8, conversion, discovery, and loading each network
(mmdit_loading, vae_loading, taesd_loading, text_encoder_loading)."""
