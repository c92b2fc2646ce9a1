"""Built-in study files (the demo study)."""
