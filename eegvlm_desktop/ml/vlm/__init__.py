"""The EEG vision-language model (part of :mod:`eegvlm_desktop.ml`, the torch package).

Import the submodules directly (``config`` is torch-free; ``model``, ``weights`` import torch):

* :mod:`.config` — :class:`VLMConfig` (presets ``'tiny'`` and ``'default'``, JSON round trip);
* :mod:`.tokenizer` — train / save / load the BPE tokenizer, encode examples;
* :mod:`.model` — :class:`EEGVLM` (``forward``, ``stage_probs``, ``generate_reasoning``,
  ``attention_maps``);
* :mod:`.weights` — ``save_model`` / ``load_model`` with a checked manifest.
"""
