"""The gallery: image records in SQLite, metadata in and out of image files, thumbnails, export and import.

Plain Python (stdlib sqlite3, Pillow, numpy): never imports Qt or torch, so every piece runs in tests and
worker threads without a screen. The Qt widgets live in `app/ui/gallery_*.py` and `app/ui/compare_*.py`.
"""
