"""Built-in datasets: their on-disk readers and the procedural synthetic twins."""
