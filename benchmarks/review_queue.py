"""The review queue: which order makes reviews count, and nothing acknowledged is lost.

    python benchmarks/review_queue.py [--data ../shared/data/rakuten] [--budgets 50,100,200,400] [--save]

1. Active learning, simulated on real data: a model trained on a quarter of the listings
   classifies a pool (half of them); the pool's listings that need review (unsure, or text and
   photo disagree) go to a real review store; reviewers (the true labels) take them in
   ``oldest`` order (arrival: a seeded shuffle) or ``uncertain`` order (smallest margin first);
   the model is retrained with each number of reviews and scored on the last quarter. Reported:
   the accuracy gain of each order, and how many reviews the uncertain order needs to match the
   gain of the oldest order at each budget (linear interpolation between measured budgets).
2. Durability: 100 concurrent ``POST /v1/feedback`` against ``prodcat serve --review-db``; once
   all are answered the server is SIGKILLed and started again: how many are stored.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from _common import (
    base_parser,
    data_missing,
    dataset_name,
    load_labelled,
    machine_info,
    machine_line,
    markdown_table,
    parse_int_list,
    save_results,
)


def _fit(catalog, rows, labels=None):
    from prodcat.model import Classifier

    part = catalog.subset(rows)
    y = part.y.to_numpy() if labels is None else labels
    return Classifier(random_state=0).fit(part.X, y, taxonomy=catalog.taxonomy)


def active_learning(catalog, budgets: list[int], seed: int) -> dict:
    from sklearn.model_selection import train_test_split

    from prodcat.review import NewItem, ReviewStore
    from prodcat.review.batch import review_reasons

    idx = np.arange(len(catalog))
    y = catalog.y.astype(str).to_numpy()
    rest, test = train_test_split(idx, test_size=0.25, stratify=y, random_state=seed)
    seed_rows, pool = train_test_split(rest, test_size=2 / 3, stratify=y[rest], random_state=seed)
    pool = np.random.default_rng(seed).permutation(pool)  # arrival order

    def accuracy(model) -> float:
        return float((model.predict(catalog.subset(test).X) == y[test]).mean())

    t0 = time.perf_counter()
    base = _fit(catalog, seed_rows)
    base_acc = accuracy(base)
    reasons, tops = review_reasons(base, base.predict_modalities(catalog.subset(pool).X))
    queued = [(int(r), reason, top) for r, reason, top in zip(pool, reasons, tops, strict=True) if reason]
    orders = {}
    with tempfile.TemporaryDirectory() as tmp:
        for order in ("oldest", "uncertain"):  # one store per order: each sees the whole queue
            store = ReviewStore.open(f"sqlite:///{tmp}/{order}.db")
            ids = store.add([NewItem(reason, title=str(catalog.frame["title"].iat[r]), listing_id=str(r),
                                     top_k=top) for r, reason, top in queued])
            row_of = dict(zip(ids, (r for r, _, _ in queued), strict=True))
            claimed = []
            while (item := store.claim_next("sim", order=order, lease_seconds=3600)) is not None:
                claimed.append(row_of[item["id"]])
            orders[order] = claimed
            store.close()
    budgets = [b for b in budgets if b <= len(queued)] or [len(queued)]
    curves: dict[str, list[dict]] = {}
    for order, rows in orders.items():
        curves[order] = []
        for b in budgets:
            reviewed = np.asarray(rows[:b])
            model = _fit(catalog, np.concatenate([seed_rows, reviewed]))
            acc = accuracy(model)
            curves[order].append({"reviews": b, "accuracy": acc, "gain": acc - base_acc})
            print(order, b, round(acc, 4), file=sys.stderr, flush=True)
    matched = []
    u = [(0, 0.0)] + [(c["reviews"], c["gain"]) for c in curves["uncertain"]]
    for c in curves["oldest"]:
        need = None
        for (n0, g0), (n1, g1) in zip(u, u[1:], strict=False):
            if g1 >= c["gain"]:
                need = n1 if g1 == g0 else round(n0 + (c["gain"] - g0) / (g1 - g0) * (n1 - n0))
                break
        matched.append({"oldest_reviews": c["reviews"], "oldest_gain": c["gain"], "uncertain_reviews_needed": need})
    return {"seed_listings": len(seed_rows), "pool": len(pool), "queued": len(queued), "test": len(test),
            "base_accuracy": base_acc, "curves": curves, "matched": matched,
            "seconds": round(time.perf_counter() - t0, 1), "model": base}


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(bundle: Path, db: str, log: Path):
    import httpx

    port = _port()
    proc = subprocess.Popen([sys.executable, "-m", "prodcat.cli", "serve", "--model", str(bundle), "--port",
                             str(port), "--review-db", db, "--log-level", "warning"],
                            stdout=log.open("a"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server did not start; see {log}")


def durability(model, n: int = 100) -> dict:
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        bundle = model.save(Path(tmp) / "model")
        db = f"sqlite:///{tmp}/reviews.db"
        proc, base = _serve(bundle, db, Path(tmp) / "server.log")
        code = str(model.classes_[0])

        def post(i: int) -> int:
            return httpx.post(f"{base}/v1/feedback", timeout=60, json={
                "id": f"bench-{i}", "title": f"listing {i}", "description": "", "label": code}).status_code

        t0 = time.perf_counter()
        with ThreadPoolExecutor(100) as pool:
            statuses = list(pool.map(post, range(n)))
        seconds = time.perf_counter() - t0
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc, base = _serve(bundle, db, Path(tmp) / "server.log")
        stats = httpx.get(f"{base}/v1/review/stats", timeout=30).json()
        proc.terminate()
        proc.wait(30)
    return {"posted": n, "acknowledged_201": statuses.count(201), "stored_after_sigkill": stats["open"],
            "post_seconds": round(seconds, 2)}


def main(argv=None) -> int:
    parser = base_parser(__doc__.splitlines()[0], out=False)
    parser.add_argument("--budgets", type=parse_int_list, default=[50, 100, 200, 400])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if data_missing(args.data):
        print(f"data not found at {args.data}; nothing measured", file=sys.stderr)
        return 0
    catalog = load_labelled(args.data)
    al = active_learning(catalog, args.budgets, args.seed)
    model = al.pop("model")
    dur = durability(model)
    rows = [[m["oldest_reviews"], f"{m['oldest_gain'] * 100:+.2f}",
             f"{next(c['gain'] for c in al['curves']['uncertain'] if c['reviews'] == m['oldest_reviews']) * 100:+.2f}",
             m["uncertain_reviews_needed"] if m["uncertain_reviews_needed"] is not None else "not reached"]
            for m in al["matched"]]
    info = machine_info()
    md = (f"# Review queue ({dataset_name(args.data)}, seed {args.seed})\n\n"
          f"Model trained on {al['seed_listings']} listings (test accuracy {al['base_accuracy']:.4f}); of a pool of "
          f"{al['pool']}, {al['queued']} needed review; retrained with the reviewed ones, scored on {al['test']}.\n\n"
          + markdown_table(["reviews", "oldest: accuracy gain (points)", "uncertain: gain (points)",
                            "uncertain reviews for the oldest order's gain"], rows)
          + f"\n\nDurability: {dur['posted']} concurrent POST /v1/feedback, {dur['acknowledged_201']} answered 201 in "
          f"{dur['post_seconds']} s; server SIGKILLed, restarted: **{dur['stored_after_sigkill']} stored**.\n\n"
          f"{machine_line(info)}\n")
    print(md)
    if args.save:
        save_results("review_queue", {"active_learning": al, "durability": dur, "machine": info}, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
