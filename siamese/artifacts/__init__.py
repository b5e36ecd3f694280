"""What training and export leave on disk, read and checked in one place: checkpoints, export
folders (manifest, metadata, signature, trust policy) and the deployable graphs.
"""
