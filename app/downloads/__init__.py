"""Getting SD3.5 weights from Hugging Face: plans, resumable downloads, token handling. Never imports Qt or torch.

`plan`, `catalog`, `progress` and `errors` are plain Python; `hub`, `transfer` and `downloader` import
huggingface_hub and touch the network only when their functions are called.
"""
