"""OCR quality and speed: photos rendered here with known French text, and the real Rakuten photos.

1. Quality: ``--photos`` photos (default 60) rendered with PIL and a DejaVu TTF font — book
   covers, bottle and jar labels, price bands on packaging — on real-looking backgrounds (colour
   gradients, noise texture, a product shape, a tilt up to 7°, a slight blur, small print),
   accents included, then JPEG-compressed (quality 55–85). Per engine: word recall (share of
   the rendered words found among the words read, case and accents kept, punctuation stripped)
   and character error rate
   (Levenshtein distance between the rendered and the read text, spaces normalised, over the
   rendered length).
2. Speed: photos/s per engine, cold (empty OCR cache: hash, decode, OCR, store) and cached (the
   same call again: read, hash, cache hit), on the rendered photos.
3. Real photos: the 338 Rakuten listings with a photo (``--data``): how many give text, words per
   photo, seconds per photo (p50/p95), cold, per engine.

    python benchmarks/ocr_quality.py --save
"""

from __future__ import annotations

import io
import random
import re
import statistics
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any

from _common import (
    NOISE_NOTE,
    base_parser,
    data_missing,
    machine_info,
    machine_line,
    markdown_table,
    percentiles_ms,
    save_results,
)

FONTS = Path("/usr/share/fonts/truetype/dejavu")
FONT_FILES = ["DejaVuSans-Bold.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSans.ttf", "DejaVuSerif.ttf",
              "DejaVuSansCondensed-Bold.ttf"]
TITLES = ["Les Misérables", "Le Comte de Monte-Cristo", "Vingt mille lieues sous les mers",
          "L'Étranger", "Madame Bovary", "Le Petit Prince", "À la recherche du temps perdu",
          "Les Fleurs du mal", "Germinal", "La Bête humaine", "Cyrano de Bergerac",
          "Le Rouge et le Noir", "Thérèse Raquin", "L'Écume des jours", "Bonjour tristesse"]
AUTHORS = ["Victor Hugo", "Alexandre Dumas", "Jules Verne", "Albert Camus", "Gustave Flaubert",
           "Émile Zola", "Édition intégrale", "Préface inédite", "Collection Folio"]
LABELS = [["Château Lafleur", "Bordeaux Supérieur", "75 cl"], ["Confiture d'abricots", "Récolte 2023"],
          ["Crème hydratante", "Peaux sèches", "50 ml"], ["Huile d'olive", "Vierge extra", "1 litre"],
          ["Café moulu", "Torréfaction artisanale", "250 g"], ["Miel de lavande", "Provence", "500 g"],
          ["Thé vert", "Menthe fraîche", "20 sachets"], ["Savon de Marseille", "Fabriqué en France"]]
BANDS = [["PROMO", "-30 %", "12,99 €"], ["SOLDES", "2 achetés = 1 offert"], ["Prix choc", "49,90 €"],
         ["Nouveauté", "Édition limitée"], ["Jeu vidéo", "Dès 12 ans", "29,99 €"],
         ["Livraison gratuite", "Garantie 2 ans"], ["Déstockage", "Quantités limitées"]]
FINE_PRINT = ["Prix conseillé 12,99 € TTC", "Réf. 4521-B, fabriqué en Europe", "Poids net : 250 g",
              "À consommer de préférence avant fin 2025", "Ne convient pas aux enfants de moins de 3 ans",
              "Éco-participation incluse", "Livré sans piles"]
WORD = re.compile(r"[\w€%]+(?:[-'’][\w]+)*", re.UNICODE)


# --- rendering -------------------------------------------------------------------------------------


def _font(rng: random.Random, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(FONTS / rng.choice(FONT_FILES)), size)


def _background(rng: random.Random, size: tuple[int, int]):
    """A photo-like background: a two-colour gradient with noise texture."""
    import numpy as np
    from PIL import Image

    w, h = size
    a = np.array([rng.randint(120, 255) for _ in range(3)], dtype=np.float32)
    b = np.array([rng.randint(60, 230) for _ in range(3)], dtype=np.float32)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = a * (1 - t) + b * t + np.zeros((h, w, 3), np.float32)
    img += np.random.default_rng(rng.randint(0, 10**6)).normal(0, 9, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _contrast(rgb: tuple[int, ...]) -> tuple[int, int, int]:
    return (15, 15, 25) if sum(rgb) / 3 > 128 else (250, 250, 245)


def _draw_block(draw, lines: list[tuple[str, Any]], box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, _ = box
    y = y0
    for text, font in lines:
        width = draw.textlength(text, font=font)
        draw.text((x0 + max(0, (x1 - x0 - width) / 2), y), text, fill=fill, font=font)
        y += int(font.size * 1.35)


def _fit(draw, rng, text: str, width: int, size: int):
    font = _font(rng, size)
    while size > 12 and draw.textlength(text, font=font) > width:
        size -= 2
        font = font.font_variant(size=size)
    return font


def render_photo(kind: str, rng: random.Random) -> tuple[Any, list[str]]:
    """A 500×500 photo of ``kind`` (cover, label, band) and the text lines rendered on it."""
    from PIL import ImageDraw

    img = _background(rng, (500, 500))
    draw = ImageDraw.Draw(img)
    if kind == "cover":
        lines = [rng.choice(TITLES), rng.choice(AUTHORS)]
        x0, y0 = rng.randint(70, 110), rng.randint(30, 60)
        panel = tuple(rng.randint(0, 255) for _ in range(3))
        draw.rectangle([x0, y0, 500 - x0, 470], fill=panel, outline=(30, 30, 30), width=3)
        fonts = [_fit(draw, rng, lines[0], 500 - 2 * x0 - 20, rng.randint(26, 36)),
                 _fit(draw, rng, lines[1], 500 - 2 * x0 - 20, rng.randint(18, 24))]
        _draw_block(draw, list(zip(lines, fonts, strict=True)), (x0 + 10, y0 + 50, 490 - x0, 0), _contrast(panel))
    elif kind == "label":
        lines = list(rng.choice(LABELS))
        draw.ellipse([120, 20, 380, 480], fill=tuple(rng.randint(20, 90) for _ in range(3)))  # a bottle
        panel = (rng.randint(220, 255), rng.randint(215, 250), rng.randint(190, 235))
        draw.rounded_rectangle([100, 170, 400, 350], radius=18, fill=panel)
        fonts = [_fit(draw, rng, t, 280, s) for t, s in zip(lines, (30, 22, 20), strict=False)]
        _draw_block(draw, list(zip(lines, fonts, strict=True)), (110, 185, 390, 0), (40, 20, 10))
    else:  # a price band across a product photo
        lines = list(rng.choice(BANDS))
        draw.rectangle([60, 60, 440, 440], fill=tuple(rng.randint(40, 200) for _ in range(3)))
        band = (rng.choice([200, 230, 250]), rng.randint(0, 60), rng.randint(0, 60))
        y = rng.randint(150, 260)
        draw.rectangle([0, y, 500, y + 40 + 34 * len(lines)], fill=band)
        fonts = [_fit(draw, rng, t, 460, s) for t, s in zip(lines, (40, 28, 30), strict=False)]
        _draw_block(draw, list(zip(lines, fonts, strict=True)), (20, y + 12, 480, 0), (255, 255, 255))
    # Small print at the foot of the photo (a reference, a weight, a price) in 13–17 px.
    small = rng.choice(FINE_PRINT)
    draw.rectangle([0, 462, 500, 500], fill=(245, 245, 240))
    draw.text((12, 470), small, fill=(60, 60, 60), font=_font(rng, rng.randint(13, 17)))
    lines.append(small)
    from PIL import ImageFilter

    img = img.rotate(rng.uniform(-7, 7), resample=3, expand=False, fillcolor=(255, 255, 255))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.1)))
    return img, lines


def rendered_set(n: int, seed: int) -> list[tuple[bytes, list[str], str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = ("cover", "label", "band")[i % 3]
        img, lines = render_photo(kind, rng)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=rng.randint(55, 85))
        out.append((buf.getvalue(), lines, kind))
    return out


# --- scoring -------------------------------------------------------------------------------------


def words_of(text: str) -> list[str]:
    return WORD.findall(unicodedata.normalize("NFC", text).replace("’", "'"))


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def score(truth_lines: list[str], text: str) -> tuple[int, int, int, int]:
    """(rendered words, of them found, edit distance, rendered characters)."""
    truth = words_of(" ".join(truth_lines))
    found = list(words_of(text))
    hits = 0
    for w in truth:
        if w in found:
            found.remove(w)
            hits += 1
    ref = " ".join(" ".join(truth_lines).split())
    hyp = " ".join(text.split())
    return len(truth), hits, levenshtein(ref, hyp), len(ref)


# --- measuring -----------------------------------------------------------------------------------


def measure_engine(name: str, photos: list[tuple[bytes, list[str], str]], real: list[str],
                   out: Path) -> dict[str, Any]:
    from prodcat.ocr import OcrCache, create_engine, read_photos

    engine = create_engine(name)
    t0 = time.perf_counter()
    engine.load()
    result: dict[str, Any] = {"engine": name, "version": engine.version, "load_s": time.perf_counter() - t0}
    cache_path = out / f"ocr-bench-{name}.sqlite"
    cache_path.unlink(missing_ok=True)
    blobs = [p for p, _, _ in photos]
    engine.read(blobs[0])  # warm-up (first onnxruntime run), not timed
    with OcrCache(cache_path) as cache:
        t = time.perf_counter()
        cold = read_photos(blobs, engine=engine, cache=cache, progress=False)
        cold_s = time.perf_counter() - t
        t = time.perf_counter()
        warm = read_photos(blobs, engine=engine, cache=cache, progress=False)
        warm_s = time.perf_counter() - t
    assert all(w.cached for w in warm)
    by_kind: dict[str, list[tuple[int, int, int, int]]] = {}
    for (_, lines, kind), r in zip(photos, cold, strict=True):
        by_kind.setdefault(kind, []).append(score(lines, r.text))
    result["quality"] = {}
    for kind, rows in [*by_kind.items(), ("all", [s for v in by_kind.values() for s in v])]:
        words, hits, dist, chars = (sum(x) for x in zip(*rows, strict=True))
        result["quality"][kind] = {"photos": len(rows), "word_recall": hits / words, "cer": dist / chars}
    result["timeouts"] = sum(r.status == "timeout" for r in cold)
    result["cold_photos_per_s"] = len(blobs) / cold_s
    result["cached_photos_per_s"] = len(blobs) / warm_s
    result["cold_ms"] = percentiles_ms([r.seconds for r in cold], (50, 95))
    if real:
        t = time.perf_counter()
        rr = read_photos(real, engine=engine, cache=None, progress=sys.stderr.isatty())
        real_s = time.perf_counter() - t
        with_text = [r for r in rr if r.has_text]
        result["real"] = {
            "photos": len(rr), "with_text": len(with_text),
            "with_3_words": sum(len(r.words) >= 3 for r in rr),
            "median_words_when_text": statistics.median([len(r.words) for r in with_text]) if with_text else 0,
            "statuses": {s: sum(r.status == s for r in rr) for s in sorted({r.status for r in rr})},
            "seconds": real_s, "photos_per_s": len(rr) / real_s,
            "ms": percentiles_ms([r.seconds for r in rr], (50, 95)),
        }
    return result


def report(results: list[dict[str, Any]], n: int, info: dict[str, Any]) -> str:
    lines = [f"## OCR quality and speed ({n} rendered photos, {', '.join(r['engine'] for r in results)})", ""]
    lines.append("Rendered 500×500 photos with known French text (book covers, bottle and jar labels, "
                 "price bands; DejaVu fonts, gradient + noise backgrounds, tilt ±7°, blur up to 1.1 px, "
                 "13–17 px small print at the foot, JPEG quality 55–85). Word recall: share of rendered words found (exact, accents and case kept). "
                 "CER: character edit distance / rendered characters.")
    lines.append("")
    kinds = ["cover", "label", "band", "all"]
    rows = []
    for r in results:
        q = r["quality"]
        rows.append([r["engine"], r["version"],
                     *[f"{q[k]['word_recall']:.1%} / {q[k]['cer']:.3f}" for k in kinds]])
    lines.append(markdown_table(["engine", "version", *[f"{k}: recall / CER" for k in kinds]], rows))
    lines.append("")
    rows = [[r["engine"], r["load_s"], r["cold_photos_per_s"], r["cold_ms"]["p50"], r["cold_ms"]["p95"],
             r["cached_photos_per_s"], r["timeouts"]] for r in results]
    lines.append(markdown_table(["engine", "load s", "cold photos/s", "cold p50 ms", "cold p95 ms",
                                 "cached photos/s", "timeouts"], rows))
    real = [r for r in results if "real" in r]
    if real:
        lines += ["", f"Real Rakuten photos (the {real[0]['real']['photos']} labelled listings with a "
                  "photo), cold, no cache:", ""]
        rows = [[r["engine"], r["real"]["with_text"], f"{r['real']['with_text'] / r['real']['photos']:.0%}",
                 r["real"]["with_3_words"], r["real"]["median_words_when_text"], r["real"]["photos_per_s"],
                 r["real"]["ms"]["p50"], r["real"]["ms"]["p95"],
                 ", ".join(f"{v} {k}" for k, v in r["real"]["statuses"].items())] for r in real]
        lines.append(markdown_table(["engine", "with text", "share", "≥ 3 words", "median words",
                                     "photos/s", "p50 ms", "p95 ms", "statuses"], rows))
    lines += ["", machine_line(info), "", NOISE_NOTE]
    return "\n".join(lines)


def main() -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=60, help="rendered photos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engines", default="rapidocr,tesseract", help="comma-separated engine names")
    parser.add_argument("--no-real", action="store_true", help="skip the real Rakuten photos")
    args = parser.parse_args()
    from prodcat.ocr import engine_status

    real: list[str] = []
    if not args.no_real and not data_missing(args.data):
        from prodcat.data import read_catalog

        real = [p for p in read_catalog(args.data).frame["image"].tolist() if p]
    args.out.mkdir(parents=True, exist_ok=True)
    photos = rendered_set(args.photos, args.seed)
    status = engine_status()
    results = []
    for name in [e.strip() for e in args.engines.split(",") if e.strip()]:
        if status.get(name) != "ok":
            print(f"skipping {name}: {status.get(name)}", file=sys.stderr)
            continue
        results.append(measure_engine(name, photos, real, args.out))
    info = machine_info()
    md = report(results, len(photos), info)
    print(md)
    if args.save:
        for path in save_results("ocr_quality", {"machine": info, "photos": len(photos), "seed": args.seed,
                                                 "results": results}, md):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
