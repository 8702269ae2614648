"""The final check: prodcat's default and the seeds' recipe on Rakuten's frozen split, looked at once.

The frozen split is ``prodcat.evaluation.protocol.frozen_split`` of the listing ids (about 20 %
of the sample, picked by a salted hash, the same on every machine). Both models are fitted on
the other listings and score the frozen ones; prodcat's stored threshold is checked against the
precision it promised. Every look is recorded with the fingerprint of prodcat's fitting code in
``results/final_check_looks.json``; a second look with other code is refused unless
``--reason`` says why (the reason is kept), because choices made after a look may be tuned to it.

    python benchmarks/final_check.py --save
    python benchmarks/final_check.py --members quality --reason "…" --save   # an opt-in member set

``--members`` (a named set of ``prodcat.text.ensemble.MEMBER_SETS`` or comma-separated member
names) checks a text ensemble other than the default; its look is recorded with the members, and
its results go to ``final_check_members_<names>``.
"""

from __future__ import annotations

import sys

from _common import (
    NOISE_NOTE,
    RESULTS_DIR,
    base_parser,
    baseline_pipeline,
    baseline_texts,
    classification_scores,
    data_missing,
    layouts_table,
    load_labelled,
    machine_info,
    machine_line,
    markdown_table,
    precision_coverage_table,
    save_results,
    timer,
)


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from prodcat.cli.modelling import member_names
    from prodcat.evaluation.automation import coverage_at_precision, model_promise
    from prodcat.evaluation.layouts import layout_frames, layout_scores
    from prodcat.evaluation.protocol import FinalCheck, frozen_split
    from prodcat.model import Classifier
    from prodcat.model.fitcache import source_fingerprint
    from prodcat.text.ensemble import TextEnsemble

    parser = base_parser(__doc__.split("\n\n")[0], out=False)
    parser.add_argument("--reason", default=None, help="why the frozen split is looked at again")
    parser.add_argument("--members", default=None,
                        help="the text ensemble's members instead of the default ones: a named set "
                             "(e.g. quality) or comma-separated member names")
    args = parser.parse_args(argv)
    if data_missing(args.data):
        return 0
    # Named set expanded, names and encoders checked before a look is recorded.
    members = list(member_names(args.members)) if args.members else None
    catalog = load_labelled(args.data)
    frozen = frozen_split(catalog.frame["id"])
    FinalCheck(RESULTS_DIR / "final_check_looks.json").open(
        source_fingerprint(), reason=args.reason, model={"members": members} if members else None)
    train, test = catalog.subset(~frozen), catalog.subset(frozen)
    print(f"fitting on {len(train):,} listings, scoring the {len(test):,} frozen ones …", file=sys.stderr)
    with timer() as elapsed:
        text = TextEnsemble(members=members) if members else None
        model = Classifier(text=text).fit(train.X, train.y, taxonomy=train.taxonomy)
    prodcat_fit = elapsed()
    with timer() as elapsed:
        recipe = baseline_pipeline().fit(baseline_texts(train.frame), train.y.astype(str).to_numpy())
    recipe_fit = elapsed()
    classes = np.asarray(model.classes_).astype(str)
    cols = np.searchsorted(classes, recipe.classes_)
    y = test.y.astype(str).to_numpy()
    layouts_p, layouts_r = {}, {}
    for name, frame in layout_frames(test.X).items():
        layouts_p[name] = model.predict_proba(frame)
        layouts_r[name] = np.zeros_like(layouts_p[name])
        layouts_r[name][:, cols] = recipe.predict_proba(baseline_texts(frame))
    p, r = layouts_p["given"], layouts_r["given"]
    scores = {"prodcat": classification_scores(y, classes[p.argmax(1)]),
              "recipe": classification_scores(y, classes[r.argmax(1)])}
    layouts = {"prodcat": layout_scores(y, layouts_p, classes),
               "recipe": layout_scores(y, layouts_r, classes)}
    y_idx = np.searchsorted(classes, y)
    cover = {"prodcat": coverage_at_precision(p, y_idx), "recipe": coverage_at_precision(r, y_idx)}
    promise = model_promise(p, y, classes, model.threshold_, model.target_precision)

    rows = [[label, scores["prodcat"][k], scores["recipe"][k],
             f"{100 * (scores['prodcat'][k] - scores['recipe'][k]):+.2f}"]
            for k, label in (("weighted_f1", "weighted F1"), ("macro_f1", "macro F1"), ("accuracy", "accuracy"))]
    rows.append(["fit (s)", f"{prodcat_fit:.1f}", f"{recipe_fit:.1f}", "–"])
    prec = promise["precision"]
    markdown = "\n\n".join([
        "## Final check on Rakuten's frozen split",
        f"Fitted on {len(train):,} listings, scored on the {len(test):,} listings of the frozen split "
        f"(`frozen_split`, salted hash of the id), looked at once with code {source_fingerprint()}"
        + (f"; text members {', '.join(members)} instead of the default ones." if members else "."),
        markdown_table(["metric", "prodcat", "recipe", "delta (points)"], rows, digits=4),
        "Field layouts, weighted F1:",
        layouts_table(layouts),
        "Share that could be filed at a target precision (best threshold on these listings):",
        precision_coverage_table(cover),
        f"prodcat's stored threshold ({promise['threshold']:.3f}, chosen out of fold on the training "
        f"listings for {model.target_precision:.0%} precision) filed {promise['coverage']:.1%} of the "
        f"frozen listings at {'–' if prec is None else f'{prec:.1%}'} precision.",
        machine_line(info := machine_info()), NOISE_NOTE])
    print(markdown)
    if args.save:
        payload = {"benchmark": "final_check", "data": str(args.data), "n_train": len(train),
                   "n_test": len(test), "code": source_fingerprint(),
                   "members": members, "scores": scores,
                   "layouts": layouts, "precision_coverage": cover, "threshold_promise": promise,
                   "fit_seconds": {"prodcat": prodcat_fit, "recipe": recipe_fit}, "machine": info}
        name = "final_check" + ("_members_" + "_".join(members) if members else "")
        for path in save_results(name, payload, markdown):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
