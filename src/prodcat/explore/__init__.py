"""Data exploration: know the catalogue before modelling it.

``prodcat explore --data PATH --out DIR`` (or, from Python)::

    from prodcat.data import read_catalog
    from prodcat.explore import build_exploration, write_exploration_report

    exploration = build_exploration(read_catalog(path), image_sample=2000, seed=0)
    write_exploration_report(exploration, "explore-out")   # summary.json, figures/, report.html

:func:`build_exploration` returns a dict: the keys below (all JSON-ready, written to
``summary.json``) plus ``_raw``, in-memory arrays for the figures (length arrays, word
frequencies, linkage matrix, thumbnails) that :func:`make_figures` draws and that are not saved.
A web page can call the same two functions and show ``make_figures(exploration)``.

Optional dependencies (``pip install 'prodcat[explore]'``): ``py3langid`` (offline language
detection) and ``wordcloud``. Without them those sections become ``{"available": false,
"reason": ...}`` and are listed in ``skipped``; the report is still written.

``summary.json`` keys
---------------------
Class codes are strings; "per_class" dicts are keyed by code, largest class first.

- ``schema_version`` (1), ``source``, ``format``, ``read_report`` (the reader's counts:
  rows_read, rows_kept, rows_without_text, rows_without_label, images_expected, images_missing).
- ``parameters``: image_sample, seed, top_words, description_chars_read (description characters
  read for words, centroids and languages).
- ``size``: listings, labelled, unlabelled, classes, with_image (image file found),
  with_description (non-empty once HTML is removed).
- ``classes``: list of {code, name, parent, count, share (of labelled listings)}.
- ``class_distribution``: counts {code: n}, largest/smallest {code, name, count},
  imbalance_ratio (largest count / smallest count; None without labels).
- ``parents``: available (the taxonomy has parents), rows {parent: listings},
  classes {parent: [codes]}; classes without a parent are under "(no parent)".
- ``missing_descriptions``: count, share, per_class {code: {count, share}}. A description is
  missing when it is empty after HTML tags, entities and spaces are removed.
- ``text_lengths``: unit, title and description {n, mean, median, p90, max} in characters of
  cleaned text (description stats over non-empty descriptions), per_class {code: {title, description}}.
- ``html``: listings_with_html (a tag or an entity in the raw title or description), share.
- ``duplicates``: note, and for titles, descriptions, listings (title and description together)
  and images (identical file content: blake2b of the bytes, hashed only when two files have the
  same size): rows (listings in a group of 2+), groups, extra_copies (rows - groups), share
  (rows / listings), examples [{text, count, ids, labels {code: n}}] (largest groups first).
  Texts are compared after cleaning (case, HTML, spacing ignored); empty values never count.
- ``label_conflicts``: note, by_listing (same cleaned title and description), by_title,
  by_image (same image content): groups (products whose labelled listings carry 2+ labels),
  rows (labelled listings in those groups), examples [{text, count, labels, ids}].
- ``languages``: available, detector (name and version), note, overall {code: n} ("und": no
  words to judge), names {code: English name}, distinct (codes other than "und"), main,
  main_share (of judged listings), per_class {code: {lang: n}}; or {available: false, reason}.
- ``words``: available, note, vocabulary_size, tokens, hapax_share (share of the vocabulary
  seen once), zipf_slope (least-squares slope of log frequency on log rank, words seen 3+
  times), overall and per_class: [[word, listings containing it], ...] (top ``top_words``,
  French, English and unit stop words removed).
- ``images``: listings_with_image, listings_without_image, missing_files (named by the data but
  not found, by the reader or at decoding time), available (False with a reason when the sample
  is 0 or no listing has an image), sample_size, sampled, decoded, corrupt (unreadable, truncated
  or not an image), too_large, vanished, formats, modes, with_alpha, cmyk, sizes {"WxH": n} (top
  10), width/height/file_kb stats, white_border {definition, mean, median,
  share_of_images_with_border (>= 5 % of the area)}, per_class {code: {sampled, decoded,
  white_border_mean, mean_rgb [r, g, b] (inside the borders)}}, errors [{id, file, status,
  reason}] (first 10).
- ``similarity``: available, method, classes (codes in the dendrogram, at most 150), closest_pairs
  [{a, b, cosine}] (top 10 pairs of TF-IDF centroids); or {available: false, reason}.
- ``notes``: list of remarks (no labels, classes left out of a figure...).
- ``skipped``: {section: reason} for every section left out (languages, word_clouds, images,
  similarity).
- ``timings_s``: seconds per step (cleaning, text, duplicates, languages, words, images) and total.
"""

from prodcat.explore.build import SCHEMA_VERSION, build_exploration, summary_dict
from prodcat.explore.figures import make_figures
from prodcat.explore.report import write_exploration_report

__all__ = ["SCHEMA_VERSION", "build_exploration", "make_figures", "summary_dict",
           "write_exploration_report"]
