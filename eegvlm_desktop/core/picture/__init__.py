"""What the model sees and says: THE epoch renderer, its training variants, measured evidence,
reasoning text.
"""
