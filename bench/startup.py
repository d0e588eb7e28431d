"""App cold start: seconds from `python app.py` to a served page, against a bare
`import torch, gradio` in the same run (target: within 1.3×; models load on first use).

    python bench/startup.py [--runs 3]
"""
import argparse
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bare_import() -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, gradio"], check=True)
    return time.perf_counter() - t


def served_page() -> float:
    port = free_port()
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                return time.perf_counter() - t
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit("app.py exited before serving the page")
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    bare_import()  # warm the file cache for both
    bare = statistics.median(bare_import() for _ in range(a.runs))
    page = statistics.median(served_page() for _ in range(a.runs))
    print(f"import torch, gradio : {bare:.2f} s (median of {a.runs})")
    print(f"python app.py → page : {page:.2f} s (median of {a.runs})")
    print(f"ratio                : {page / bare:.2f}× (target ≤ 1.3×)")


if __name__ == "__main__":
    main()
