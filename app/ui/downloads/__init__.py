"""The in-app download dialog."""
