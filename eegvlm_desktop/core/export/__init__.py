"""Datasets and exports: the training/fine-tuning dataset, its folder format, recording exports,
staged folders.
"""
