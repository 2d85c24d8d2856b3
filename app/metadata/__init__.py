"""Image files and their parameters, torch-free and Qt-free.

A1111 text, our JSON, ComfyUI graphs, EXIF, recall, and the one image writer.
"""
