"""The command line: `sd35-studio generate | models | download` (the window is `app.main`)."""
