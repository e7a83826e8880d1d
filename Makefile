# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install clean locks

# The base dependencies and the test clients (extra `clients`) at exactly the versions of
# requirements/bots.lock (what CI tests is what runs); the dev tools as pyproject allows.
$(STAMP): pyproject.toml requirements/bots.lock
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]" -c requirements/bots.lock
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/saybot run

# Without a working chromium (installing needs root or password-less sudo) the dashboard
# browser test skips, saying why; SAYBOT_REQUIRE_BROWSER=1 (as .ci/run sets) makes it fail.
test: $(STAMP)
	bash scripts/install-system-deps.sh
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# After changing dependencies in pyproject.toml or tts_service/modal_app.py: both lock files
# again (versions already locked are kept where they still fit), then `make install`.
locks: $(STAMP)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile --quiet pyproject.toml --universal --extra clients \
		--custom-compile-command "make locks" -o requirements/bots.lock
	$(BIN)/python -c "from tts_service.modal_app import IMAGE_REQUIREMENTS as r; print(*r, sep='\n')" \
		| $(BIN)/uv pip compile --quiet - --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 \
		--custom-compile-command "make locks" -o requirements/tts-image.lock

clean:
	rm -rf $(VENV)
