"""A small BPE tokenizer trained on the chain-of-thought corpus (nothing is downloaded).

Pre-tokenisation is Metaspace (words become ``▁word``, so decoding restores spaces) followed by
punctuation isolation (``Stage:`` -> ``▁Stage`` ``:``). Every stage name must be ONE token
(``▁N1``), because the direct-answer path reads the logits of exactly those tokens; training
repeats the stage names often enough that BPE always learns those merges, and
:func:`stage_token_ids` checks it.

A pretrained LM brings its own tokenizer instead (:func:`prepare_pretrained_tokenizer` makes its
stage names single tokens and fills missing special tokens).

The tokenizer lives in its own folder and is loaded with ``PreTrainedTokenizerFast`` — not
``AutoTokenizer``, which picks a Qwen2 tokenizer with different ids when a Qwen2 ``config.json``
is nearby (see shared/design/environment.md).
"""
from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from eegvlm_desktop.core.stages import STAGES

PAD, BOS, EOS, UNK, IMAGE = "<pad>", "<s>", "</s>", "<unk>", "<image>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK, IMAGE)
EXTRA_ALPHABET = "µ°±≥≤→–—·"
#: Label value ignored by the LM loss (the transformers convention).
IGNORE_INDEX = -100


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 2000,
    stages: Sequence[str] = STAGES,
) -> PreTrainedTokenizerFast:
    """Train a BPE tokenizer on ``texts`` and wrap it for transformers.

    Parameters
    ----------
    texts : iterable of str
        The corpus (prompts, reasoning texts, answers).
    vocab_size : int
        Upper bound of the vocabulary, special tokens included.
    stages : sequence of str
        Stage names that must each become a single token.

    Returns
    -------
    PreTrainedTokenizerFast
        With ``<s>``, ``</s>``, ``<pad>``, ``<unk>`` and the additional ``<image>`` token.
    """
    if not isinstance(vocab_size, int) or vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"The 'vocab_size' parameter must be an integer >= "
                         f"{len(SPECIAL_TOKENS) + 256}, but got {vocab_size!r}.")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    tok.decoder = decoders.Metaspace()
    # Printable ASCII and a few unit symbols are always in the alphabet, so numbers and
    # punctuation the corpus never showed still tokenise (as characters) instead of <unk>.
    alphabet = [c for c in string.printable if not c.isspace()] + list(EXTRA_ALPHABET)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=1,
                                  special_tokens=list(SPECIAL_TOKENS), initial_alphabet=alphabet,
                                  show_progress=False)
    # Why the repetition: BPE merges the most frequent pairs first, so a line of stage names
    # repeated this often makes '▁N1' etc. the first merges whatever the corpus holds.
    stage_line = " ".join(stages)
    corpus = list(texts) + [stage_line] * 10_000
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        additional_special_tokens=[IMAGE],
    )
    stage_token_ids(fast, stages)  # fail now, not at model build time
    return fast


def stage_token_ids(tokenizer: PreTrainedTokenizerFast, stages: Sequence[str] = STAGES
                    ) -> list[int]:
    """Return the single token id of each stage name (as it follows a space).

    Raises
    ------
    ValueError
        If a stage name is not a single token of this tokenizer.
    """
    ids = []
    for stage in stages:
        enc = tokenizer.encode(" " + stage, add_special_tokens=False)
        if len(enc) != 1:
            raise ValueError(
                f"Stage {stage!r} is not a single token of this tokenizer (got "
                f"{tokenizer.convert_ids_to_tokens(enc)}); retrain it with train_tokenizer."
            )
        ids.append(int(enc[0]))
    return ids


def add_stage_tokens(tokenizer: PreTrainedTokenizerFast, stages: Sequence[str] = STAGES
                     ) -> list[str]:
    """Make every stage name, as it follows a space, one token of a pretrained tokenizer.

    Why: the direct-answer head reads the next-token logits of exactly one token per stage
    after ``Stage:``. Pretrained tokenizers usually split ``N1`` (Qwen2: ``ĠN`` ``1``), and the
    shared first piece would make N1, N2 and N3 indistinguishable from those logits. Each
    missing name is added with its leading space (``" N1"``): added tokens are matched on the
    raw text before pre-tokenisation, so ``"Stage: N1"`` gives that single token and decodes
    back with its space; ``single_word`` keeps ``" N1"`` from matching inside ``" N12"``.
    The caller grows the LM's embeddings if the vocabulary outgrows them.

    Returns
    -------
    list of str
        The tokens added (empty when every stage name was already one token).

    Raises
    ------
    ValueError
        If a stage name is still not a single token afterwards.
    """
    missing = [s for s in stages
               if len(tokenizer.encode(" " + s, add_special_tokens=False)) != 1]
    added = [" " + s for s in missing]
    if added:
        tokenizer.add_tokens([AddedToken(t, single_word=True, normalized=False) for t in added])
    stage_token_ids(tokenizer, stages)
    return added


def prepare_pretrained_tokenizer(tokenizer: PreTrainedTokenizerFast,
                                 stages: Sequence[str] = STAGES) -> list[str]:
    """Adapt a pretrained LM's tokenizer in place to what the model needs.

    * stage names become single tokens (:func:`add_stage_tokens`);
    * a missing BOS becomes the EOS token (Qwen2 has none; GPT-2 uses its end-of-text token
      both ways, the document separator the LM saw in pretraining), since every prompt
      starts with BOS (:func:`encode_prompt`);
    * a missing pad token becomes EOS too (padded positions are masked, so which id is moot).

    Returns
    -------
    list of str
        The tokens added.

    Raises
    ------
    ValueError
        If the tokenizer has no EOS token or a stage name cannot become one token.
    """
    if tokenizer.eos_token is None:
        raise ValueError("The pretrained tokenizer has no EOS token, which generation needs to "
                         "stop; choose an LM folder whose tokenizer defines one.")
    if tokenizer.bos_token is None:
        tokenizer.bos_token = tokenizer.eos_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return add_stage_tokens(tokenizer, stages)


def encode_prompt(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    """Token ids of a prompt: BOS then the text (no EOS: the model continues it)."""
    return [int(tokenizer.bos_token_id)] + list(tokenizer.encode(text, add_special_tokens=False))


def encode_example(tokenizer: PreTrainedTokenizerFast, prompt: str, answer: str
                   ) -> tuple[list[int], list[int]]:
    """Token ids and LM labels of one training example ``<s> prompt answer </s>``.

    Returns
    -------
    input_ids, labels : list of int
        ``labels`` is ``IGNORE_INDEX`` over the prompt, so only the answer (and EOS) is learnt.
    """
    prompt_ids = encode_prompt(tokenizer, prompt)
    answer_ids = list(tokenizer.encode(" " + answer.strip(), add_special_tokens=False))
    answer_ids.append(int(tokenizer.eos_token_id))
    return prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids


def pad_batch(sequences: Sequence[Sequence[int]], pad_value: int) -> tuple[list[list[int]],
                                                                           list[list[int]]]:
    """Right-pad sequences to a common length; returns ``(padded, attention_mask)``."""
    n = max(len(s) for s in sequences)
    padded = [list(s) + [pad_value] * (n - len(s)) for s in sequences]
    mask = [[1] * len(s) + [0] * (n - len(s)) for s in sequences]
    return padded, mask


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, folder: str | Path) -> list[Path]:
    """Save into ``folder`` (created); returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(p) for p in tokenizer.save_pretrained(str(folder))]


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by :func:`save_tokenizer` (never via ``AutoTokenizer``)."""
    return PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
