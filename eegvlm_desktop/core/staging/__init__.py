"""What the model's stages mean here: model layer, night context, model card, attention maps,
metrics, protocol, review order.
"""
