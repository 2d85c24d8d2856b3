"""The main window, its menus and commands, banner, status and settings."""
