# The two commands of the README:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.clearsep-installed
DEMO_DIR ?= demo-output
DEMO_CLIPS ?= 300
# Clean single-event clips are scarce and natural multi-event clips plentiful: the regime the loop is for
# (benchmarks/README.md, "Does the loop improve separation?").
DEMO_SINGLE_EVENT_FRACTION ?= 0.1
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: demo test setup system-deps clean

# The main job: the embedded demo corpus, then the ClearSep loop on it (rerunning resumes / reprints).
demo: setup
	@[ -f $(DEMO_DIR)/corpus/corpus.json ] || $(BIN)/clearsep-data demo-corpus $(DEMO_DIR)/corpus --clips $(DEMO_CLIPS) --single-event-fraction $(DEMO_SINGLE_EVENT_FRACTION) --seed 0
	$(BIN)/clearsep-data iterate $(DEMO_DIR)/corpus $(DEMO_DIR)/loop $(DEMO_ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

setup: system-deps $(STAMP)

# Debian's ffmpeg decodes audio for torchcodec (datasets' Audio feature).
system-deps:
	@if command -v ffmpeg >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ]; then \
		echo "Installing the Debian package 'ffmpeg'..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg; \
	else \
		echo "ClearSep needs the Debian package 'ffmpeg'. Install it with:"; \
		echo "    sudo apt-get install -y --no-install-recommends ffmpeg"; \
		exit 1; \
	fi

$(STAMP): pyproject.toml constraints-cpu.txt
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints-cpu.txt -e '.[dev]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) $(DEMO_DIR) *.egg-info
