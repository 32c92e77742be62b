"""A night on disk: read it lazily, channels and units, montage roles, display filters,
de-identification, the epoch grid.
"""
