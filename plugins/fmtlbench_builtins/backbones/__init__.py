"""Built-in backbones: image encoders from timm."""
