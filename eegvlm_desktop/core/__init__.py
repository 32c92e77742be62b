"""Qt-free core: recordings, hypnograms, persistence, rendering. Never import Qt here."""
