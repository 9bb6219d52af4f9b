"""Built-in client-side task weightings: loss weightings and torchjd's Jacobian aggregators."""
