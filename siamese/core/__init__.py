"""The project's own foundations, needing no other part of it: the spec network, image decoding,
pair files, metrics, one-line errors, atomic files and provenance.
"""
