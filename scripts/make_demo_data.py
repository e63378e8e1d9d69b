"""Make the demo problem set shipped in data/demo/ (ours; deterministic).

    python scripts/make_demo_data.py            # rewrites data/demo/{train,heldout}.jsonl

One-digit additions, bare ("What is 3 + 4?") and as short word problems, which the bundled
SmolLM2-135M can partly solve when shown how to count up inside <think>. Held-out problems use
number pairs (bare) and name/object/template combinations (word) that never appear in training.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "data" / "demo"
NAMES = ["Sam", "Mia", "Leo", "Ava", "Ben", "Zoe", "Max", "Lily", "Tom", "Emma", "Noah", "Ella"]
OBJECTS = ["apples", "pencils", "stickers", "marbles", "books", "cookies", "shells", "cards", "balloons", "stamps"]
TEMPLATES = [
    "{name} has {a} {obj}. {name} gets {b} more {obj}. How many {obj} does {name} have now?",
    "There are {a} {obj} in a box. {name} puts {b} more {obj} in the box. How many {obj} are in the box?",
    "{name} found {a} {obj} in the morning and {b} {obj} in the afternoon. How many {obj} did {name} find in all?",
    "A shelf holds {a} {obj}. {name} adds {b} {obj} to it. How many {obj} are on the shelf now?",
]


def make(seed: int = 1234) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    pairs = [(a, b) for a in range(10) for b in range(10)]
    rng.shuffle(pairs)
    bare = [{"problem": f"What is {a} + {b}?", "answer": str(a + b), "kind": "bare"} for a, b in pairs]
    word, seen = [], set()
    while len(word) < 200:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        template, name, obj = rng.choice(TEMPLATES), rng.choice(NAMES), rng.choice(OBJECTS)
        text = template.format(name=name, a=a, b=b, obj=obj)
        if text in seen:
            continue
        seen.add(text)
        word.append({"problem": text, "answer": str(a + b), "kind": "word"})
    train = bare[:65] + word[:135]
    heldout = bare[65:] + word[135:]
    for prefix, rows in (("train", train), ("heldout", heldout)):
        for i, row in enumerate(rows):
            row["id"] = f"{prefix}-{i:03d}"
            row["domain"] = "math"
    rng.shuffle(train)
    rng.shuffle(heldout)
    return train, heldout


def main() -> None:
    train, heldout = make()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("heldout", heldout)):
        with open(OUT / f"{name}.jsonl", "w") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    print(f"wrote {len(train)} training and {len(heldout)} held-out problems to {OUT}")


if __name__ == "__main__":
    main()
