"""Two text domains from the bundled Rotten Tomatoes snippets, for `--target-data`.

    python benchmarks/text_domain_shift.py --out runs/text-shift --per-domain 1500

Shuffles the snippets (seeded) and splits them in two disjoint halves: `source.csv` keeps the
snippets as written; `target.csv` holds the other half lower-cased, stripped of punctuation and
digits, with the words in random order (a bag-of-words, ASR-like domain). Both keep their
fresh/rotten labels: the target's are ignored by training (`--target-data`) and used only to
score (`--test-data`). Prints one JSON line with the files and their sizes.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
from pathlib import Path

from transferkit.data import load_data


def shifted(text: str, rng: random.Random) -> str:
    words = re.sub(r"[^a-z ]+", " ", text.lower()).split()
    rng.shuffle(words)
    return " ".join(words)


def write(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/text-shift")
    parser.add_argument("--per-domain", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = load_data("demo:rotten-tomatoes")["all"]
    rng = random.Random(args.seed)
    order = list(range(len(data)))
    rng.shuffle(order)
    rows = [(data.inputs[i], data.classes[data.targets[i]]) for i in order[:2 * args.per_domain]]
    source, target = rows[:args.per_domain], rows[args.per_domain:]
    target = [(shifted(text, rng), label) for text, label in target]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write(out / "source.csv", source)
    write(out / "target.csv", [(t, label) for t, label in target if t])
    print(json.dumps({"source": str(out / "source.csv"), "target": str(out / "target.csv"),
                      "n_source": len(source), "n_target": sum(1 for t, _ in target if t)}))


if __name__ == "__main__":
    main()
