"""Text model speed on this CPU: training tokens/s for the GPT and LSTM `cpu` presets, and sampling
tokens/s at batch 1 for the GPT with its KV cache and without (recomputing attention over the whole
context for every new token), on the shipped checkpoints when present.

The sampling loop is timed against the model alone: the same tokens fed through ``next_logits`` with
the cache, one at a time, and nothing else (no distributions, no drawing, no text). Their ratio is
what the bookkeeping around each token costs; the page's loop (the loop plus the per-position
records its views keep) is timed too. Runs alternate and medians are reported, since the machine
may be shared.

    python bench/text_speed.py [--threads 2]
"""
import argparse
import statistics
import time

import torch

from timing import ROOT, median_ms  # noqa: E402  (also puts the repository on sys.path)

from models import FAMILIES  # noqa: E402
from models.core import checkpoint  # noqa: E402
from models.core.family import last, seeded  # noqa: E402
from models.text import corpus  # noqa: E402

SHIPPED = ROOT / "assets" / "checkpoints"


def clock() -> float:
    """Seconds: CPU time of this process on one thread (robust when the machine is shared), else wall time."""
    return time.process_time() if torch.get_num_threads() == 1 else time.perf_counter()


def training_speed(family: str, dataset: str) -> tuple[float, str]:
    fam = FAMILIES[family]
    config = fam.config("cpu", dataset=dataset)
    torch.manual_seed(0)
    model = fam.build(config).train()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    (x,), _ = fam.examples(config, "train")
    batch = (x[:config.batch_size],)

    def step():
        loss = fam.train_step(model, batch, config)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    ms = median_ms(step, runs=10, warmup=2)
    params = sum(p.numel() for p in model.parameters())
    what = f"{family} cpu preset on {dataset} ({config.level}, batch {config.batch_size}×{config.seq_len}, {params / 1e6:.2f} M params)"
    return config.batch_size * config.seq_len / (ms / 1000), what


def sampling_speed(model, fam, use_cache: bool, length: int) -> float:
    kwargs = {"use_cache": use_cache} if "use_cache" in fam.sample.__code__.co_varnames else {}
    t = clock()
    last(fam.sample(model, 1, generator=seeded(0), prompt="", length=length, **kwargs))
    return length / (clock() - t)


def step_ms(model, context: int) -> tuple[float, float]:
    """Milliseconds for the model alone to give the next token's logits after ``context`` tokens: one
    new token against a KV cache of the others, and the whole context recomputed."""
    tokens = torch.randint(2, model.vocab_size, (1, context))
    with torch.no_grad():
        _, cache = model.next_logits(tokens[:, :-1])
        cached = median_ms(lambda: model.next_logits(tokens, cache), runs=30)
        full = median_ms(lambda: model.next_logits(tokens), runs=30)
    return cached, full


def loop_vs_model(model, length: int, runs: int = 7) -> dict:
    """ms per token: the sampling loop, the page's loop (loop + per-position records), and the model
    alone fed the same tokens with its cache, medians over alternating runs."""
    times = {"loop": [], "page": [], "model": []}
    for r in range(runs):
        t = clock()
        steps = list(corpus.decode(model, model.tokenizer, 1, seeded(r), length=length, temperature=0.8))
        times["loop"].append(clock() - t)
        t = clock()
        steps = list(corpus.decode(model, model.tokenizer, 1, seeded(r), length=length, temperature=0.8))
        corpus.position_records(model.tokenizer, 1, steps, 15)
        times["page"].append(clock() - t)
        tokens = torch.tensor([[1] + steps[-1].ids])
        t = clock()
        with torch.no_grad():
            cache = None
            for i in range(1, tokens.shape[1]):
                _, cache = model.next_logits(tokens[:, :i], cache)
        times["model"].append(clock() - t)
    return {k: statistics.median(v) * 1000 / length for k, v in times.items()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for family, dataset in (("gpt", "hamlet"), ("lstm", "reviews")):
        tps, what = training_speed(family, dataset)
        print(f"training  {what}: {tps:8,.0f} tokens/s")
    for name, family in (("gpt_hamlet", "gpt"), ("lstm_reviews", "lstm")):
        fam = FAMILIES[family]
        path = SHIPPED / f"{name}.safetensors"
        if path.exists():
            model, config, _ = checkpoint.load(path)
        else:
            name = f"untrained {family} cpu preset"
            config = fam.config("cpu")
            model = fam.build(config).eval()
        length = getattr(config, "block", 200)  # a full context: where the cache matters most
        runs = [("KV cache", True), ("no cache", False)] if family == "gpt" else [("state cache", True)]
        for label, use_cache in runs:
            tps = sampling_speed(model, fam, use_cache, length)
            print(f"sampling  {name}, batch 1, {length} tokens, {label}: {tps:8,.0f} tokens/s (whole loop)")
        if family == "gpt":
            cached, full = step_ms(model, config.block)
            print(f"model     {name}, next token after {config.block} tokens: {cached:.2f} ms with the KV cache, "
                  f"{full:.2f} ms recomputing ({full / cached:.1f}×)")
        ms = loop_vs_model(model, length)
        print(f"loop      {name}, {length} tokens at τ 0.8: sampling loop {ms['loop']:.3f} ms/token, page loop "
              f"(+ per-position records) {ms['page']:.3f}, model alone on the same tokens {ms['model']:.3f} → "
              f"loop/model {ms['loop'] / ms['model']:.2f}×, page/model {ms['page'] / ms['model']:.2f}×")


if __name__ == "__main__":
    main()
