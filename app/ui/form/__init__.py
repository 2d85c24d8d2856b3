"""The settings form: its state object and the widgets that show and edit it."""
