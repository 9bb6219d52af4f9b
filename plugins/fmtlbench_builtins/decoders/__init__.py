"""Built-in decoders: the multi-decoder (MD) architecture."""
