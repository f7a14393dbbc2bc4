"""Render the JSON lines the benchmark scripts print as the Markdown tables of the README's Performance section.

    python benchmarks/table.py runs/bench/results.jsonl
"""

from __future__ import annotations

import json
import sys

COLUMNS = {
    "feature_extraction": ["data", "image_size", "epochs", "transferkit_s", "plain_s", "speedup", "transferkit_acc",
                           "plain_acc"],
    "fine_tuning": ["data", "image_size", "precision", "transferkit_s_per_epoch", "plain_s_per_epoch", "overhead",
                    "transferkit_acc", "plain_acc"],
    "inference": ["suite", "model", "n", "transferkit_per_s", "eager_per_s", "onnx_per_s", "onnx_vs_eager",
                  "export_max_abs_diff", "max_prob_diff_onnx"],
    "scaling": ["stage", "multiple", "n", "seconds", "per_s", "peak_anon_mb", "peak_rss_mb", "feature_mb"],
    "sharded_extraction": ["data", "image_size", "processes", "one_process_s", "sharded_first_s", "sharded_s",
                           "speedup", "threads_one_process", "threads_per_sharded_process"],
}
TITLES = {"feature_extraction": "1. Feature extraction: cached features vs the frozen pass every epoch",
          "fine_tuning": "2-3. Fine-tuning seconds per epoch (fp32 and bf16 autocast) vs the plain loop",
          "inference": "4. Inference throughput (items/s)", "scaling": "5. Scaling with the data",
          "sharded_extraction": "6. Feature extraction sharded over CPU processes (first call starts them)"}


def render(rows: list[dict]) -> str:
    parts = []
    for bench, columns in COLUMNS.items():
        mine = [r for r in rows if r.get("bench") == bench]
        if not mine:
            continue
        parts += [f"**{TITLES[bench]}**", "", "| " + " | ".join(columns) + " |",
                  "|" + "---|" * len(columns)]
        parts += ["| " + " | ".join(_cell(r.get(c, "")) for c in columns) + " |" for r in mine]
        parts.append("")
    if rows:
        m = rows[-1]["machine"]
        loads = sorted(r["machine"]["load_avg_1m"] for r in rows)
        parts.append(f"Measured with {m['cpu_threads']} torch thread(s) on {m['cores']} cores, torch {m['torch']}, "
                     f"Python {m['python']}; 1-minute load average {loads[0]}-{loads[-1]} while measuring.")
    return "\n".join(parts)


def _cell(value) -> str:
    if isinstance(value, float) and (abs(value) < 1e-3 and value != 0):
        return f"{value:.1e}"
    return str(value)


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.startswith("{")]
    print(render(rows))


if __name__ == "__main__":
    main()
