"""Triton: the model repository writer, the PyTriton server (siamese-serve) and the client runner."""
