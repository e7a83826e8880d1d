# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install clean locks test-gpu-stack

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

# After changing dependencies in pyproject.toml or tts_service/image_packages.py: the lock
# files again (versions already locked are kept where they still fit), then `make install`.
# The image's lock is resolved without chatterbox-tts, which is appended to be installed
# with --no-deps (see tts_service/image_packages.py); the tier's tools are resolved against it.
IMAGE_PACKAGES := $(BIN)/python -m tts_service.image_packages
IMAGE_PLATFORM := --python-version 3.11 --python-platform x86_64-manylinux_2_28
locks: $(STAMP)
	$(BIN)/python -m pip install --quiet "$$($(IMAGE_PACKAGES) uv)"
	$(BIN)/uv pip compile --quiet pyproject.toml --universal --extra clients \
		--custom-compile-command "make locks" -o requirements/bots.lock
	$(IMAGE_PACKAGES) resolved | $(BIN)/uv pip compile --quiet - $(IMAGE_PLATFORM) \
		--custom-compile-command "make locks" -o requirements/tts-image.lock
	$(IMAGE_PACKAGES) chatterbox \
		| sed 's/$$/\n    # installed with --no-deps (tts_service\/image_packages.py)/' \
		>> requirements/tts-image.lock
	$(IMAGE_PACKAGES) tools | $(BIN)/uv pip compile --quiet - $(IMAGE_PLATFORM) \
		-c requirements/tts-image.lock \
		--custom-compile-command "make locks" -o requirements/gpu-stack-tests.lock

# The real-library tier: chatterbox-tts on the CPU with random weights, in its own virtualenv
# holding exactly the Modal image's packages (requirements/tts-image.lock, installed as the
# image installs it) and the tier's test tools. torch 2.6.0 is PyPI's (CUDA) build, as in the
# image; it runs on the CPU here.
GPU_VENV := .venv-gpu-stack
GPU_STAMP := $(GPU_VENV)/.installed
$(GPU_STAMP): $(STAMP) requirements/tts-image.lock requirements/gpu-stack-tests.lock
	$(BIN)/python -m pip install --quiet "$$($(IMAGE_PACKAGES) uv)"
	rm -rf $(GPU_VENV)
	$(BIN)/uv venv --quiet --python $(PYTHON) $(GPU_VENV)
	$(BIN)/uv pip install --quiet --python $(GPU_VENV)/bin/python --no-deps \
		-r requirements/tts-image.lock -r requirements/gpu-stack-tests.lock
	touch $(GPU_STAMP)

test-gpu-stack: $(GPU_STAMP)
	$(GPU_VENV)/bin/python -m pytest -p no:cacheprovider tests/chatterbox_real

clean:
	rm -rf $(VENV) $(GPU_VENV)
