"""pydl: a deep-learning library whose kernels are its own."""
