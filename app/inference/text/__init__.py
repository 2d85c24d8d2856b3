"""Prompts to conditioning: tokenisation, prompt weights, tokenizer files, and the SD3 conditioning assembled
from the CLIP/T5 encoders (networks/text_encoders.py; loaded by checkpoints/text_encoder_loading.py)."""
