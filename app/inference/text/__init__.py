"""Prompts to conditioning: tokenisation, prompt weights, tokenizer files and the CLIP/T5 text encoders."""
