# semsearch: `make demo` and `make test` work on a fresh machine with only Python 3.10+ installed.
PYTHON ?= python3
VENV ?= .venv
# PyTorch is installed first and on its own so pip picks the CPU build; override on other machines,
# e.g. `make test TORCH_SPEC=torch` for whatever your platform's default build is.
TORCH_SPEC ?= torch==2.13.0
DEMO_INDEX ?= .demo-index
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install browser demo test screenshots bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: install
	$(BIN)/semsearch --index $(DEMO_INDEX) index corpora
	$(BIN)/semsearch --index $(DEMO_INDEX) status
	$(BIN)/semsearch --index $(DEMO_INDEX) search "how do I fix a flat tyre" --limit 3
	$(BIN)/semsearch --index $(DEMO_INDEX) search "how many vacation days do employees get" --limit 3
	$(BIN)/semsearch --index $(DEMO_INDEX) search "why is the sky blue" --limit 3 --group-by-document
	$(BIN)/semsearch --index $(DEMO_INDEX) search "which planet is the hottest" --limit 2 --type pdf
	$(BIN)/semsearch --index $(DEMO_INDEX) search "can I work from home" --limit 1 --json

# The web page test drives Debian's chromium (Playwright's own browser download does not work
# offline). Installed here when missing; without it (no root, not Debian) that one test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
		echo "could not install chromium: tests/test_web.py will be skipped" >&2

test: install browser
	$(BIN)/python -m pytest -q

# docs/web-search.png and docs/web-document.png, taken by the web page test from the real page.
screenshots: install browser
	SEMSEARCH_SCREENSHOTS=docs $(BIN)/python -m pytest -q tests/test_web.py

bench: install
	$(BIN)/python benchmarks/index_folder.py

clean:
	rm -rf $(VENV) $(DEMO_INDEX) build *.egg-info
