"""The gallery panel and the compare views."""
