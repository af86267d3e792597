"""Tokens the 7-task zero-shot suite scores, for the eval row's floor.

Each multiple-choice request is (context, continuation); a model scores it
in one forward over both, so the suite's work is the sum of their lengths
over every document and choice (no padding, no shared-prefix reuse: the
ideal the floor assumes). Lengths come from the LLaMA-2 SentencePiece
tokenizer; for models with another tokenizer the count is an approximation
(SmolLM2's BPE gives within about 15% on English text).

usage: eval_tokens.py DATA_DIR [--limit N]  -> prints {"tokens": T, "requests": R}"""
import bz2
import json
import sys
from pathlib import Path

TASKS = ["boolq", "piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa"]
FILES = {"boolq": "boolq.jsonl", "piqa": "piqa.jsonl", "winogrande": "winogrande.jsonl",
         "arc_easy": "arc_easy.jsonl", "arc_challenge": "arc_challenge.jsonl", "openbookqa": "openbook_qa.jsonl"}


def requests(data, task, limit):
    if task == "hellaswag":
        lines = bz2.open(data / "tasks" / "hellaswag_val_full.txt.bz2", "rt", encoding="utf-8").read().split("\n")
        for k in range(0, len(lines) - 5, 6):
            if limit and k // 6 >= limit:
                return
            ctx = lines[k]
            for e in lines[k + 2:k + 6]:
                yield ctx, " " + e
        return
    with open(data / "tasks" / FILES[task], encoding="utf-8") as f:
        for i, line in enumerate(f):
            if limit and i >= limit:
                return
            d = json.loads(line)
            if task == "winogrande":
                for opt in d["context_options"]:
                    yield opt, " " + d["continuation"]
            else:
                for ch in d["choices"]:
                    yield d["query"], " " + ch


def main():
    data = Path(sys.argv[1])
    limit = int(sys.argv[sys.argv.index("--limit") + 1]) if "--limit" in sys.argv else 0
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(data / "tokenizers" / "llama2" / "tokenizer.model"))
    tokens = reqs = 0
    for t in TASKS:
        for ctx, cont in requests(data, t, limit):
            tokens += len(sp.encode(ctx)) + len(sp.encode(cont))
            reqs += 1
    print(json.dumps({"tokens": tokens, "requests": reqs}))


if __name__ == "__main__":
    main()
