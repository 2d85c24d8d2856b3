"""The SD3.5 engine: pure torch (plus transformers for the text encoders). Never imports Qt."""
