"""Labelling new image-text pairs with a finished run: its folder, the encoders it may load, pair files."""
