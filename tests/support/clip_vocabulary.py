"""A CLIP-sized byte-pair vocabulary written twice: as the CLIP tokenizer files transformers reads (vocab.json,
merges.txt) and as the gzipped merge list Meta's ``sam3`` tokenizer reads. Both tokenizers then give the same ids.

OpenAI's vocabulary cannot be downloaded here; this one has its size (49408 tokens) and layout (the 256 byte
stand-ins, the same with the end-of-word mark, one token per merge, then the two special tokens), with made-up
merges: pairs of lower-case letters first, so that words become a few multi-letter tokens.
"""

import gzip
import itertools
import json
import string
from pathlib import Path

CLIP_VOCABULARY_SIZE = 49408
END_OF_WORD = "</w>"


def _byte_stand_ins() -> list[str]:
    """The 256 printable characters byte-level BPE uses for the byte values, in CLIP's vocabulary order (the
    printable bytes first, then the others)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    return [chr(byte) for byte in printable] + [chr(256 + index) for index in range(len(others))]


def _merges(count: int) -> list[tuple[str, str]]:
    letters = string.ascii_lowercase
    merges = [(a, b) for a, b in itertools.product(letters, letters)]
    merges += [(a, b + END_OF_WORD) for a, b in itertools.product(letters, letters)]
    seen = {a + b for a, b in merges}
    for a, b in itertools.product(_byte_stand_ins(), repeat=2):
        if len(merges) == count:
            break
        if a + b not in seen:
            merges.append((a, b))
            seen.add(a + b)
    return merges


def write_clip_vocabulary(folder: Path) -> Path:
    """Write vocab.json and merges.txt into ``folder`` and return the path of Meta's gzipped merge list."""
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = _byte_stand_ins()
    merges = _merges(CLIP_VOCABULARY_SIZE - 2 * len(alphabet) - 2)
    tokens = alphabet + [c + END_OF_WORD for c in alphabet] + [a + b for a, b in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    assert len(tokens) == len(set(tokens)) == CLIP_VOCABULARY_SIZE
    (folder / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(tokens)}))
    merge_lines = "\n".join(f"{a} {b}" for a, b in merges)
    (folder / "merges.txt").write_text("#version: 0.2\n" + merge_lines + "\n")
    meta_merges = folder / "bpe_simple_vocab.txt.gz"
    with gzip.open(meta_merges, "wt", encoding="utf-8") as file:  # no final newline: Meta's reader would
        file.write("#version: 0.2\n" + merge_lines)  # take the empty last line for one more merge
    return meta_merges
