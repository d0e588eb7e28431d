"""A room full of visitors: 8 gradio_client clients for a bounded time against a running studio.

    python app.py --port 7860 &
    python bench/load.py --url http://127.0.0.1:7860/ --seconds 60

Six clients loop on cheap samplers (GAN and VAE samples, each with its own seed), one on a heavy
streamed generator (Diffusion's DDIM), one trains (a VAE run, cancelled at the end). Prints successes,
failures, latency percentiles per kind, whether any output was lost or mixed up (each result's file
exists and its provenance carries the seed that client asked for), the heavy call's median under load
against its idle median (the lanes keep it within 3×: cheap calls never take its turn), and the app's
memory before and after (RSS of the process listening on the port, when it runs on this machine).
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CHEAP = [("/gan_samples", {"checkpoint": "gan_mnist", "n": 16, "temperature": 1.0, "class_name": "any (random)"}),
         ("/vae_samples", {"checkpoint": "vae_mnist", "n": 16, "scale": 1.0})]
HEAVY = ("/diffusion_generate", {"checkpoint": "diffusion_mnist_cond", "sampler": "DDIM", "steps": 20, "eta": 0.0,
                                 "class_name": "any (unconditional)", "guidance": 0.0, "n_samples": 4})
TRAIN = ("/vae_train", {"dataset": "mnist", "latent_size": 2, "beta": 1.0, "steps": 20000, "batch_size": 32,
                        "lr": 1e-3, "run_name": "load_test_run", "checkpoint": "vae_mnist"})


@dataclass
class Tally:
    kind: str
    ok: int = 0
    failed: list = field(default_factory=list)
    lost: list = field(default_factory=list)  # results whose file is missing or whose provenance is not ours
    latencies: list = field(default_factory=list)

    def percentiles(self) -> str:
        if not self.latencies:
            return "no calls"
        q = statistics.quantiles(self.latencies, n=20, method="inclusive") if len(self.latencies) > 1 else [
            self.latencies[0]] * 19
        return f"p50 {statistics.median(self.latencies):.2f} s, p95 {q[18]:.2f} s, max {max(self.latencies):.2f} s"


def _check_output(result, seed: int) -> str | None:
    """None when the result's PNG exists and its provenance names our seed, else what is wrong."""
    record = next((r for r in result if isinstance(r, dict) and "controls" in r), None)
    files = [r.get("path") if isinstance(r, dict) else r for r in result]
    files = [f for f in files if isinstance(f, str) and f.endswith(".png")]
    if record is None or record.get("seed") != seed:
        return f"provenance {record and record.get('seed')!r} is not seed {seed}"
    if not files or not all(Path(f).exists() for f in files):
        return f"output file missing: {files}"
    return None


def _loop_cheap(client, stop: threading.Event, tally: Tally, index: int):
    k = 0
    while not stop.is_set():
        api, kwargs = CHEAP[(index + k) % len(CHEAP)]
        seed = 1000 * index + k
        t0 = time.time()
        try:
            result = client.predict(seed=seed, **kwargs, api_name=api)
        except Exception as e:
            tally.failed.append(f"{api}: {type(e).__name__}: {e}")
        else:
            tally.latencies.append(time.time() - t0)
            wrong = _check_output(result, seed)
            if wrong:
                tally.lost.append(f"{api}: {wrong}")
            else:
                tally.ok += 1
        k += 1


def heavy_once(client, seed: int = 0) -> tuple[float, str | None]:
    t0 = time.time()
    result = client.predict(seed=seed, **HEAVY[1], api_name=HEAVY[0])
    took = time.time() - t0
    record = next((r for r in result if isinstance(r, dict) and "controls" in r), None)
    return took, None if record and record.get("seed") == seed else f"provenance {record!r}"


def _loop_heavy(client, stop: threading.Event, tally: Tally):
    k = 0
    while not stop.is_set():
        try:
            took, wrong = heavy_once(client, seed=k)
        except Exception as e:
            tally.failed.append(f"{HEAVY[0]}: {type(e).__name__}: {e}")
        else:
            tally.latencies.append(took)
            if wrong:
                tally.lost.append(wrong)
            else:
                tally.ok += 1
        k += 1


def _train(client, stop: threading.Event, tally: Tally):
    """Start a run, follow it until the end of the load, cancel it; success = it reported steps."""
    job = client.submit(**{**TRAIN[1], "run_name": f"load_run_{int(time.time())}"}, api_name=TRAIN[0])
    stop.wait()
    try:
        seen = [o[0] for o in job.outputs() if o]
        message = client.predict(api_name="/vae_train_cancel")
        deadline = time.time() + 60
        while not job.done() and time.time() < deadline:
            time.sleep(0.2)
        last = str(job.outputs()[-1][0]) if job.outputs() else ""
        if "Cancelling" in message and "Cancelled at step" in last:
            tally.ok += 1
        else:
            tally.failed.append(f"training: saw {seen[-1:]}, cancel said {message!r}, last {last!r}"
                                + (f", {job.exception()}" if job.done() and job.exception() else ""))
    except Exception as e:
        tally.failed.append(f"training: {type(e).__name__}: {e}")


def rss_mb(port: int) -> float | None:
    """Resident memory of the process whose command line serves ``port`` (Linux /proc), or None."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            if b"app.py" in b" ".join(cmd) and str(port).encode() in cmd:
                status = (proc / "status").read_text()
                return int(next(l for l in status.splitlines() if l.startswith("VmRSS")).split()[1]) / 1024
        except (OSError, StopIteration, ValueError):
            continue
    return None


def run(url: str, seconds: float, cheap_clients: int = 6, idle_calls: int = 2) -> dict:
    """The whole load; returns the tallies and figures (also what the test asserts on)."""
    from gradio_client import Client

    # results stay on the server (download_files=False): the clients share this machine's cores, and the
    # figures are about the studio, not about the clients copying files
    clients = [Client(url, verbose=False, download_files=False) for _ in range(cheap_clients + 2)]
    heavy_client, train_client = clients[-2], clients[-1]
    heavy_once(heavy_client)  # load the checkpoint before timing it
    idle = [heavy_once(heavy_client, seed=i)[0] for i in range(idle_calls)]
    cheap, heavy, train = Tally("cheap"), Tally("heavy"), Tally("training")
    stop = threading.Event()
    threads = [threading.Thread(target=_loop_cheap, args=(c, stop, cheap, i)) for i, c in enumerate(clients[:-2])]
    threads += [threading.Thread(target=_loop_heavy, args=(heavy_client, stop, heavy)),
                threading.Thread(target=_train, args=(train_client, stop, train))]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(180)
    idle += [heavy_once(heavy_client, seed=i)[0] for i in range(idle_calls)]  # idle again, after the load
    for c in clients:
        c.close()
    idle_median = statistics.median(idle)
    loaded = statistics.median(heavy.latencies) if heavy.latencies else float("inf")
    return {"cheap": cheap, "heavy": heavy, "training": train, "idle_heavy_s": idle_median,
            "loaded_heavy_s": loaded, "heavy_ratio": loaded / idle_median}


def report(figures: dict, seconds: float) -> str:
    lines = [f"8 clients for {seconds:.0f} s:"]
    for kind in ("cheap", "heavy", "training"):
        t = figures[kind]
        lines.append(f"  {kind:8s} {t.ok} ok, {len(t.failed)} failed, {len(t.lost)} lost; {t.percentiles()}"
                     + "".join(f"\n    {m}" for m in (t.failed + t.lost)[:5]))
    lines.append(f"  heavy {HEAVY[0]} median: idle {figures['idle_heavy_s']:.2f} s, under load "
                 f"{figures['loaded_heavy_s']:.2f} s ({figures['heavy_ratio']:.1f}× idle)")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:7860/")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--cheap-clients", type=int, default=6)
    a = p.parse_args()
    port = int(a.url.rstrip("/").rsplit(":", 1)[1])
    before = rss_mb(port)
    figures = run(a.url, a.seconds, a.cheap_clients)
    print(report(figures, a.seconds))
    after = rss_mb(port)
    if before is not None and after is not None:
        print(f"  app memory: {before:.0f} MB before, {after:.0f} MB after")


if __name__ == "__main__":
    main()
