"""Built-in partitioners."""
