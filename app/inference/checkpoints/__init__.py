"""Everything that reads model files: headers, formats, fp8, conversion, discovery and loading."""
