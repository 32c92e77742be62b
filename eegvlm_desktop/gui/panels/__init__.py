"""Dock panels: model, epoch, review, agreement, fine-tuning, statistics."""
