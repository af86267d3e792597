"""Independent Python references for kickgrid's evaluation, written from the
reference definitions (lm-evaluation-harness task YAMLs/utils and api/,
the SQuAD v1.1 evaluation script, LLM-KICK's scripts), never from our C:

- harness prompts rebuilt from the llm-foundry rows (doc_to_text,
  doc_to_choice, doc_to_target, fewshot_context with random.Random(1234)),
- _encode_pair, acc/acc_norm with np.argmax, mean_stderr, bootstrap stderr,
- SQuAD normalize_answer/EM/F1, LLM-KICK validate_response,
- JS divergence in float64 NumPy,
- log-likelihoods from the float64 reference model (llama_ref)."""
import bz2
import csv
import json
import math
import random
import re
import string
from collections import Counter
from pathlib import Path

import numpy as np

TASK_FILES = {
    "boolq": "tasks/boolq.jsonl", "piqa": "tasks/piqa.jsonl", "arc_easy": "tasks/arc_easy.jsonl",
    "arc_challenge": "tasks/arc_challenge.jsonl", "openbookqa": "tasks/openbook_qa.jsonl",
    "winogrande": "tasks/winogrande.jsonl", "lambada": "tasks/lambada_openai.jsonl",
    "hellaswag": "tasks/hellaswag_val_full.txt.bz2", "triviaqa": "tasks/triviaqa_sm_sub.jsonl",
    "freebaseqa": "tasks/freebaseqa.jsonl",
}


# ---------------------------------------------------------------- documents

def hellaswag_preprocess(text):
    """lm_eval/tasks/hellaswag/utils.py preprocess."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def _hellaswag_query(line):
    """The harness query from llama.cpp's "label: ctx" line: preprocess, and
    ctx_b.capitalize() for ActivityNet contexts (ctx_b = the words after the
    last sentence end; WikiHow contexts start "How to" and have no ctx_b)."""
    q = hellaswag_preprocess(line)
    label, ctx = q.split(": ", 1)
    if ctx.startswith("How to") or not ctx or ctx[-1] in ".!?":
        return q
    m = list(re.finditer(r"[.!?] ", ctx))
    cut = m[-1].end() if m else 0
    return f"{label}: {ctx[:cut]}{ctx[cut:].capitalize()}"


def load_docs(data_dir, task):
    """Harness-style docs: dicts with text, choices, gold, target, answers."""
    path = Path(data_dir) / TASK_FILES[task]
    if task == "hellaswag":
        lines = bz2.decompress(path.read_bytes()).decode("utf-8").split("\n")
        docs = []
        for i in range(0, len(lines) - 5, 6):
            docs.append(dict(text=_hellaswag_query(lines[i]), gold=int(lines[i + 1]),
                             choices=[hellaswag_preprocess(e) for e in lines[i + 2:i + 6]]))
        return docs
    rows = [json.loads(l) for l in path.read_text(encoding="utf-8").split("\n") if l.strip()]
    docs = []
    for r in rows:
        if task == "boolq":
            assert r["query"].startswith("Passage: ")
            passage, question = r["query"][len("Passage: "):].rsplit("\nQuestion: ", 1)
            docs.append(dict(text=f"{passage}\nQuestion: {question}\nAnswer:", choices=r["choices"], gold=r["gold"]))
        elif task == "piqa":
            goal = r["query"][len("Question: "):-1]
            docs.append(dict(text=f"Question: {goal}\nAnswer:", choices=r["choices"], gold=r["gold"]))
        elif task in ("arc_easy", "arc_challenge"):
            question = r["query"][len("Question: "):]
            docs.append(dict(text=f"Question: {question}\nAnswer:", choices=r["choices"], gold=r["gold"]))
        elif task == "openbookqa":
            docs.append(dict(text=r["query"], choices=r["choices"], gold=r["gold"]))
        elif task == "winogrande":
            docs.append(dict(text=None, choices=r["context_options"], gold=r["gold"], target=r["continuation"]))
        elif task == "lambada":
            text = r["context"] + " " + r["continuation"]
            docs.append(dict(text=" ".join(text.split(" ")[:-1]), target=" " + text.split(" ")[-1]))
        else:
            answers = [r["answer"]] + [a for a in r.get("aliases", []) if a != r["answer"]]
            docs.append(dict(text=r["context"], raw=r["context"], answers=list(dict.fromkeys(answers))))
    return docs


def load_mmlu(data_dir):
    """{subject: (dev rows, test rows)} with rows (question, [4 choices], answer index)."""
    base = Path(data_dir) / "tasks" / "mmlu"
    out = {}
    for f in sorted((base / "test").glob("*_test.csv")):
        subject = f.name[:-len("_test.csv")]

        def rows(p):
            with open(p, newline="", encoding="utf-8") as fh:
                rr = list(csv.reader(fh))
            assert rr[0] == ["question", "choice0", "choice1", "choice2", "choice3", "answer"]
            return [(r[0], r[1:5], int(r[5])) for r in rr[1:]]
        out[subject] = (rows(base / "dev" / f"{subject}_dev.csv"), rows(f))
    return out


# ---------------------------------------------------------------- prompts

def _answer(task, doc):
    if task in ("lambada", "winogrande"):
        return doc["target"]
    if task in ("triviaqa", "freebaseqa"):
        return doc["answers"][0]
    return doc["choices"][doc["gold"]]


def _example_text(task, doc):
    return doc["choices"][doc["gold"]] if task == "winogrande" else doc["text"]


class Harness:
    """fewshot_context/construct_requests for one pass over a task:
    one random.Random(seed) drawing for each document in order."""

    def __init__(self, task, docs, seed=1234):
        self.task, self.docs = task, docs
        self.rnd = random.Random(seed)

    def prompt(self, i, k):
        """(contexts, continuations) of docs[i] with k few-shot examples."""
        task, doc = self.task, self.docs[i]
        if task == "freebaseqa":
            return [f"Please give answer to this question: {doc['raw']}\nThe answer is "], []
        prefix = ""
        if k > 0:
            sample = self.rnd.sample(self.docs, k + 1)
            chosen = [d for d in sample if d != doc][:k]
            for d in chosen:
                prefix += _example_text(task, d) + " " + _answer(task, d) + "\n\n"
        if task == "winogrande":
            return [prefix + c for c in doc["choices"]], [" " + doc["target"]]
        if task == "lambada":
            return [prefix + doc["text"]], [doc["target"]]
        if task in ("triviaqa",):
            return [prefix + doc["text"]], []
        return [prefix + doc["text"]], [" " + c for c in doc["choices"]]


def mmlu_prompt(subject, dev, row, k, style="harness"):
    """lm-eval's mmlu default template, or hendrycks/LLM-KICK's gen_prompt."""
    words = subject.split("_")
    letters = "ABCD"
    if style == "harness":
        def fmt(r, answer):
            s = r[0].strip() + "".join(f"\n{letters[j]}. {c}" for j, c in enumerate(r[1])) + "\nAnswer:"
            return s + (f" {letters[r[2]]}\n\n" if answer else "")
        head = f"The following are multiple choice questions (with answers) about {' '.join(words)}.\n\n"
    else:
        def fmt(r, answer):
            s = r[0] + "".join("\n{}. {}".format(letters[j], c) for j, c in enumerate(r[1])) + "\nAnswer:"
            return s + (" {}\n\n".format(letters[r[2]]) if answer else "")
        fs = "".join(" " + w for w in words)
        head = "The following are multiple choice questions (with answers) about {}.\n\n".format(fs)
    return head + "".join(fmt(d, True) for d in dev[:k]) + fmt(row, False)


# ---------------------------------------------------------------- scoring

def encode_pair(encode, context, continuation):
    """lm-eval TemplateLM._encode_pair with tok_encode = encode (no BOS)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode(context + continuation)
    ctx = encode(context)
    return ctx, whole[len(ctx):]


def multiple_choice(lls, choices, gold):
    """lm-eval ConfigurableTask.process_results for multiple_choice."""
    completion_len = np.array([float(len(c)) for c in choices])
    with np.errstate(divide="ignore", invalid="ignore"):
        pred_norm = np.argmax(np.asarray(lls) / completion_len)
    return float(np.argmax(lls) == gold), float(pred_norm == gold)


def mean_stderr(arr):
    mu = sum(arr) / len(arr)
    return math.sqrt(sum((x - mu) ** 2 for x in arr) / (len(arr) - 1)) / math.sqrt(len(arr))


def perplexity(items):
    return math.exp(-(sum(items) / len(items)))


def bootstrap_stderr_perplexity(xs, iters):
    """lm-eval bootstrap_stderr(perplexity, xs, iters), single-process path."""
    res = []
    chunk = min(1000, iters)
    for i in range(iters // chunk):
        rnd = random.Random(i)
        for _ in range(chunk):
            res.append(perplexity(rnd.choices(xs, k=len(xs))))
    mu = sum(res) / len(res)
    return math.sqrt(sum((x - mu) ** 2 for x in res) / (len(res) - 1))


def squad_normalize(s):
    """SQuAD v1.1 evaluate-v1.1.py normalize_answer."""
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def squad_f1(prediction, truth):
    p, t = squad_normalize(prediction).split(), squad_normalize(truth).split()
    common = Counter(p) & Counter(t)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(t)
    return 2 * precision * recall / (precision + recall)


def squad_em(prediction, truth):
    return float(squad_normalize(prediction) == squad_normalize(truth))


def llmkick_validate(answers, output):
    """LLM-KICK factoid_qa/main_freebase.py validate_response."""
    output = output.strip().replace(" ", "").lower()
    for ans in [a.strip().replace(" ", "").lower() for a in answers]:
        if ans in output:
            return 1
    return 0


def js_divergence(p_logits, q_logits):
    """Per-row JS (nats) in float64 from logits, by the definition."""
    a = np.asarray(p_logits, dtype=np.float64)
    b = np.asarray(q_logits, dtype=np.float64)
    lp = a - np.logaddexp.reduce(a, axis=-1, keepdims=True)
    lq = b - np.logaddexp.reduce(b, axis=-1, keepdims=True)
    p, q = np.exp(lp), np.exp(lq)
    lm = np.logaddexp(lp, lq) - math.log(2.0)
    with np.errstate(invalid="ignore"):
        kp = np.where(p > 0, p * (lp - lm), 0.0).sum(axis=-1)
        kq = np.where(q > 0, q * (lq - lm), 0.0).sum(axis=-1)
    return 0.5 * kp + 0.5 * kq


def loglikelihood(model, ctx, cont, max_len):
    """(sum of log p(cont), is_greedy) from the float64 reference model, with
    the harness's input (ctx + cont)[-(max_len + 1):][:-1]."""
    full = list(ctx) + list(cont)
    inp = full[-(max_len + 1):][:-1]
    logits = model.logits(inp)
    lsm = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    rows = lsm[len(inp) - len(cont):]
    lp = float(sum(rows[i, t] for i, t in enumerate(cont)))
    greedy = bool(all(int(np.argmax(rows[i])) == t for i, t in enumerate(cont)))
    return lp, greedy
