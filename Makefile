# Two commands do all set-up on a fresh Linux machine:  `make repro`  and  `make test`.
# The install is idempotent: a stamp keyed on requirements.lock makes a second run a fast no-op.
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
LOCK := requirements.lock
STAMP := .venv/.installed-$(shell sha1sum $(LOCK) pyproject.toml 2>/dev/null | sha1sum | cut -c1-12)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PKGS := ffmpeg espeak-ng libespeak-ng1 chromium chromium-driver
PROFILE ?= tiny
# x264 inside a long-lived process can read heap memory it never wrote (seen as rare byte differences between
# repeated encodes); a fixed malloc fill pattern makes every encode, and so every DVC output, byte-reproducible.
export GLIBC_TUNABLES := glibc.malloc.perturb=165
PYTEST_ARGS ?= -m "not slow" -n 2

.PHONY: install system-deps repro lint test test-all ui demo clean-reports lock bench speedrun

install: system-deps $(STAMP)

system-deps:
	@if ! command -v ffmpeg >/dev/null || ! command -v espeak-ng >/dev/null || ! command -v chromium >/dev/null \
	    || ! command -v chromedriver >/dev/null; then \
	  echo "installing apt packages: $(APT_PKGS)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PKGS) >/dev/null; \
	fi

# The lock is a complete freeze, so it installs without resolving. --no-deps also keeps a single OpenCV wheel:
# opencv-contrib-python (mediapipe and syncnet-python need its contrib modules); insightface, facexlib and pyiqa
# ask for opencv-python / opencv-python-headless, which ship the same cv2 module and would overwrite it.
$(STAMP): $(LOCK) pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade "pip>=24"
	$(PIP) install -q --no-deps -r $(LOCK)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	rm -f .venv/.installed-* && touch $(STAMP)

repro: install
	@set -o pipefail; start=$$(date +%s); \
	export AVATARV_PARENT_RUN_ID=$$($(PY) -m avatarv.tracking begin); \
	PATH=$$PWD/.venv/bin:$$PATH .venv/bin/dvc repro; rc=$$?; \
	$(PY) -m avatarv.tracking finish $$AVATARV_PARENT_RUN_ID $$( [ $$rc = 0 ] || echo --failed ); \
	echo "make repro: exit $$rc after $$(( $$(date +%s) - start )) s"; exit $$rc

# The rule set is pinned in pyproject.toml ([tool.ruff.lint]) and ruff itself in requirements.lock.
lint: install
	.venv/bin/ruff check src tests benchmarks tools

test: install lint
	PATH=$$PWD/.venv/bin:$$PATH $(PY) -m pytest $(PYTEST_ARGS)

test-all: install
	PATH=$$PWD/.venv/bin:$$PATH $(PY) -m pytest -n 2

bench: install
	PATH=$$PWD/.venv/bin:$$PATH $(PY) benchmarks/run_cpu.py

# The small profile end to end on one GPU (benchmarks/speedrun_small.py, reports/small/): corpus, pack, a timed
# VAE → T2V → A2V → SFT → benchmark run on the GPU (MINUTES of budget), then the eval suite on its clips.
MINUTES ?= 25
speedrun: install
	PYTHONPATH=src $(PY) -m avatarv --profile small synth --out data/small_corpus --quiet
	PYTHONPATH=src $(PY) benchmarks/speedrun_small.py pack --corpus data/small_corpus --out .gpu/small/pack
	PYTHONPATH=src $(PY) benchmarks/speedrun_small.py run --pack .gpu/small/pack --minutes $(MINUTES) --out runs/small_out
	PYTHONPATH=src $(PY) benchmarks/speedrun_small.py score --corpus data/small_corpus --results runs/small_out --out reports/small

ui: install
	@echo "MLflow on http://127.0.0.1:5000, Jupyter Lab on http://127.0.0.1:8888"
	.venv/bin/mlflow ui --backend-store-uri sqlite:///$$PWD/mlflow.db --host 127.0.0.1 --port 5000 & \
	.venv/bin/jupyter lab --no-browser --ip 127.0.0.1 --port 8888; kill %1

# The demo web app over the trained model (runs/sft/final by default; CHECKPOINT=DIR for another saved pipeline).
demo: install
	@echo "Avatar V demo on http://127.0.0.1:8766"
	$(PY) -m avatarv demo $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT))

lock:  # re-resolve the pinned set after editing requirements.in (keeps environment.yml in step)
	$(PIP) install -r requirements.in && $(PIP) freeze --all --exclude-editable | grep -v -E "^(avatarv|pip|opencv-python|opencv-python-headless)==" > $(LOCK)
	$(PY) tools/write_environment_yml.py
