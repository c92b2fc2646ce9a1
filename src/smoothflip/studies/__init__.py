"""Built-in study files: the demo study (demo.toml) and the atlas (atlas/*.toml)."""
