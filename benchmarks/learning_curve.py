"""Does prodcat's lead over the seeds' recipe hold as the catalogue grows? A learning curve.

On the same outer folds as ``quality.py`` (frozen final-check split left out), each outer
training fold is cut to a stratified share of its listings (the smaller shares are subsets of the
larger ones); prodcat's default text model and the recipe are fitted on that share and scored
on the whole outer test fold. The table gives weighted F1 per share, the delta, the folds where
prodcat is ahead, and the weight the ensemble's selection gave the TF-IDF member (the rest goes
to the member with the title's sentence embedding).

Only real labelled listings: 1,949 on the Rakuten sample, so the largest share trains on about
1,560. Whether the trend goes on to 85k cannot be measured here (above 20,000 listings the
ensemble leaves the sentence encoder out for training time; see ``train_scaling.py``).

    python benchmarks/learning_curve.py --shares 0.25,0.5,1 --save
"""

from __future__ import annotations

import sys
from typing import Any

from _common import (
    NOISE_NOTE,
    base_parser,
    baseline_pipeline,
    baseline_texts,
    classification_scores,
    data_missing,
    load_development,
    machine_info,
    machine_line,
    markdown_table,
    save_results,
    timer,
)


def parse_shares(text: str) -> list[float]:
    shares = sorted({float(s) for s in text.split(",") if s.strip()})
    if not shares or shares[0] <= 0 or shares[-1] > 1:
        raise ValueError(f"shares must lie in (0, 1]: {text!r}")
    return shares


def nested_subsets(y, shares: list[float], seed: int) -> dict[float, Any]:
    """Row indices of each share of ``y``, stratified, each share a subset of the next larger."""
    import numpy as np

    rng = np.random.default_rng(seed)
    # Within each class a random order; a share takes the first ceil(share × class size) of
    # every class, so shares nest and every class keeps at least one listing.
    out: dict[float, list] = {s: [] for s in shares}
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        for s in shares:
            out[s].extend(rows[: max(1, int(np.ceil(s * len(rows))))].tolist())
    return {s: np.sort(np.asarray(v, dtype=np.intp)) for s, v in out.items()}


def run(catalog: Any, shares: list[float], folds: int, seed: int) -> list[dict]:
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from prodcat.model import Classifier

    X, y = catalog.X, catalog.y.astype(str).to_numpy()
    frame = catalog.frame.reset_index(drop=True)
    rows = []
    splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    for f, (tr, te) in enumerate(splits):
        X_test, test_texts = X.iloc[te].reset_index(drop=True), baseline_texts(frame.iloc[te])
        for share, sub in nested_subsets(y[tr], shares, seed + f).items():
            fit_rows = tr[sub]
            with timer() as prodcat_s:
                model = Classifier(random_state=seed).fit(X.iloc[fit_rows].reset_index(drop=True), y[fit_rows])
                pred = model.predict(X_test)
            with timer() as recipe_s:
                recipe = baseline_pipeline().fit(baseline_texts(frame.iloc[fit_rows]), y[fit_rows])
                recipe_pred = recipe.predict(test_texts)
            weights = getattr(model.text_, "weights_", {}) or {}
            rows.append({"fold": f, "share": share, "n_train": int(len(fit_rows)),
                         "prodcat": classification_scores(y[te], np.asarray(pred).astype(str)),
                         "recipe": classification_scores(y[te], np.asarray(recipe_pred).astype(str)),
                         "tfidf_weight": float(weights.get("tfidf-svm", float("nan"))),
                         "prodcat_s": prodcat_s(), "recipe_s": recipe_s()})
            print(f"fold {f} share {share:g}: n={len(fit_rows):,} prodcat "
                  f"{rows[-1]['prodcat']['weighted_f1']:.4f} recipe {rows[-1]['recipe']['weighted_f1']:.4f}",
                  file=sys.stderr, flush=True)
    return rows


def summary(rows: list[dict]) -> list[list]:
    import numpy as np

    out = []
    for share in sorted({r["share"] for r in rows}):
        rs = [r for r in rows if r["share"] == share]
        p = np.array([r["prodcat"]["weighted_f1"] for r in rs])
        b = np.array([r["recipe"]["weighted_f1"] for r in rs])
        d = 100 * (p - b)
        out.append([f"{share:g}", f"{np.mean([r['n_train'] for r in rs]):,.0f}", p.mean(), b.mean(),
                    f"{d.mean():+.2f} ± {d.std(ddof=1) if len(d) > 1 else 0:.2f}",
                    f"{int((d > 0).sum())}/{len(d)}", f"{np.nanmean([r['tfidf_weight'] for r in rs]):.2f}",
                    f"{np.mean([r['prodcat_s'] for r in rs]):.1f} / {np.mean([r['recipe_s'] for r in rs]):.1f}"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0], out=False)
    parser.add_argument("--shares", default="0.25,0.5,1", help="shares of each outer training fold")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        shares = parse_shares(args.shares)
    except ValueError as exc:
        parser.error(str(exc))
    if data_missing(args.data):
        return 0
    catalog = load_development(args.data)
    with timer() as elapsed:
        rows = run(catalog, shares, args.folds, args.seed)
    table = markdown_table(["share of the training fold", "listings trained on", "prodcat weighted F1",
                            "recipe weighted F1", "delta (points, mean ± sd over folds)",
                            "folds prodcat ahead", "TF-IDF member's weight", "fit + predict s (prodcat / recipe)"],
                           summary(rows), digits=4)
    markdown = "\n\n".join([
        f"## Learning curve on {args.data.name}: prodcat's default text model vs the seeds' recipe",
        f"{args.folds}-fold stratified CV (seed {args.seed}), {len(catalog):,} listings; each outer "
        "training fold cut to a stratified share (shares nested), both models fitted on it and "
        "scored on the whole outer test fold.",
        table, f"Wall time {elapsed():.0f} s.", machine_line(info := machine_info()), NOISE_NOTE])
    print(markdown)
    if args.save:
        payload = {"benchmark": "learning_curve", "data": str(args.data), "n": len(catalog),
                   "folds": args.folds, "seed": args.seed, "shares": shares, "rows": rows, "machine": info}
        for path in save_results(f"learning_curve_{args.data.name}", payload, markdown):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
