"""Siamese face verification on LFW: the spec network, training, export and verification."""

__version__ = "0.1.0"
