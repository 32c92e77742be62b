"""Fine-tuning a saved model on expert corrections: settings and result types, the run, the card."""
