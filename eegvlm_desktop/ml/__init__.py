"""The only package that imports torch (and transformers / open_clip): the VLM, inference,
training, checkpoints, fine-tuning, evaluation.

New model code goes here as its own module (``ml/<name>.py``); it may import ``core`` but never
``gui`` or ``cli``.
"""
