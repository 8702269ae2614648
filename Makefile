# prodcat — one command to start: `make demo`; `make test` is what CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?=
FORMAT ?= auto
OUT    ?= demo-out

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,explore,image,image-export,serve,ui,batch,text-dense,text-e5,explain,track,review,audit,ocr]'
	@touch $(STAMP)

install: $(STAMP)

## Train, cross-validate and predict on the bundled demo catalogue (or DATA=path FORMAT=...).
demo: $(STAMP)
	$(BIN)/prodcat demo --out $(OUT) $(if $(DATA),--data $(DATA) --format $(FORMAT))

## Lint, then the whole test suite (slow and real-data tests included; real-data ones skip without ../shared/data).
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	bash scripts/install-browser.sh
	bash scripts/install-tesseract.sh
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

## Benchmarks of the core issue on the real data (see benchmarks/README.md).
bench: $(STAMP)
	$(BIN)/python benchmarks/quality.py --repeats 3 --save
	$(BIN)/python benchmarks/predict_speed.py --save
	$(BIN)/python benchmarks/train_scaling.py --save

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
