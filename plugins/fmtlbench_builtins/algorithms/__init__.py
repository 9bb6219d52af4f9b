"""Built-in federated algorithms, one module each."""
