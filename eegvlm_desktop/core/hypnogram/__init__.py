"""The Hypnogram type; read, write and fit it to a recording; sleep statistics."""
