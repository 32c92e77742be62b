"""Widgets that draw a model: signals, hypnogram, epoch image, attention overlay."""
