"""Named settings profiles (YAML): partial run configs applied beneath the user's settings."""
