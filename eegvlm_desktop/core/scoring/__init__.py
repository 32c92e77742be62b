"""Scoring one night: document, session, undo, label store, audit history, navigation state."""
