"""Captions generated from labels (and attributes) by templates, for text-conditional models.

Every class gets several phrasings. A seeded choice of phrasings is held out:
test captions use only those, train and valid captions only the others, so a
model is tested on wordings it never read. Templates are generic over the class
names: `name` is the class in words, `noun` what kind of picture the source has.
"""

from __future__ import annotations

import re

import numpy as np

from components.data.batch import PAD, UNKNOWN, words

TEMPLATES = (
    "a {noun} showing {name}",
    "a picture of {name}",
    "an image of {name}",
    "this {noun} shows {name}",
    "{name} in a small {noun}",
    "a tiny {noun} of {name}",
    "here is {name}",
    "the class {name} as a {noun}",
)
HELD_OUT = 2   # phrasings only the test split uses
NOUNS = {"digits": "handwritten digit", "mnist": "handwritten digit", "binarized_mnist": "handwritten digit",
         "fashion_mnist": "piece of clothing", "cifar10": "photo", "photo_patches": "photo patch"}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def class_words(class_name: str) -> str:
    """A class name as caption words: "7" -> "seven", "T-shirt/top" -> "t shirt top"."""
    if class_name.isdigit() and int(class_name) < len(NUMBER_WORDS):
        return NUMBER_WORDS[int(class_name)]
    return " ".join(re.findall(r"[a-z0-9]+", class_name.lower())) or class_name


def phrasings(seed: int) -> dict[str, tuple[int, ...]]:
    """Template indices per split: test gets the held-out ones, train and valid the rest."""
    order = np.random.default_rng([seed, 7]).permutation(len(TEMPLATES))
    held_out, kept = tuple(sorted(order[:HELD_OUT].tolist())), tuple(sorted(order[HELD_OUT:].tolist()))
    return {"train": kept, "valid": kept, "test": held_out}


def make_captions(split: str, labels: np.ndarray, class_names, sources, attributes: np.ndarray | None,
                  attribute_names, seed: int) -> list[str]:
    """One caption per image: a phrasing allowed in `split`, the class, the image's attributes.

    `sources`: each image's source name (it picks the noun)."""
    allowed = phrasings(seed).get(split, phrasings(seed)["test"])   # anomaly sets: unseen wordings
    rng = np.random.default_rng([seed, 11, len(split), sum(map(ord, split))])
    chosen = rng.choice(np.asarray(allowed), size=len(labels))
    captions = []
    for i, (label, template) in enumerate(zip(labels, chosen)):
        text = TEMPLATES[template].format(name=class_words(class_names[label]),
                                          noun=NOUNS.get(sources[i], "image"))
        if attributes is not None:
            active = [attribute_names[a] for a in np.flatnonzero(attributes[i] > 0.5)]
            if active:
                text += ", " + " and ".join(active)
        captions.append(text)
    return captions


def vocabulary(captions) -> list[str]:
    """`<pad>`, `<unk>`, then the sorted words of `captions` (the train split's)."""
    return [PAD, UNKNOWN, *sorted({w for caption in captions for w in words(caption)})]


def caption_length(captions) -> int:
    return max((len(words(c)) for c in captions), default=0)
