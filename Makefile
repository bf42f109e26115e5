# Set-up and everyday commands. Each target creates .venv and installs the project when needed.
PYTHON ?= python3
VENV ?= .venv
SAMPLES ?= ../shared/samples
DEMO_OUT ?= demo-out
DEMO_RUN ?= demo-run
PYTEST_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	@test -d "$(SAMPLES)/dota" || { echo "error: no samples in $(SAMPLES); run 'make demo SAMPLES=/path/to/folder' with dota/, dior/ and isaid/ inside"; exit 2; }
	SAMPLES="$(abspath $(SAMPLES))" $(BIN)/mgrs build pipelines/demo.yaml --out $(DEMO_OUT) --overwrite --workers 2
	$(BIN)/mgrs validate $(DEMO_OUT)
	$(BIN)/mgrs stats $(DEMO_OUT)
	$(BIN)/mgrs preview $(DEMO_OUT) --out $(DEMO_OUT)/preview.png --count 12
	rm -rf $(DEMO_RUN)
	$(BIN)/farslip train --config configs/tiny.yaml --data $(DEMO_OUT) --out $(DEMO_RUN) --set data.split=train+trainval
	$(BIN)/farslip export $(DEMO_RUN) --out $(DEMO_RUN)/farslip-tiny.safetensors
	$(BIN)/farslip eval regions $(DEMO_OUT) --split validation --model $(DEMO_RUN) --device cpu --out $(DEMO_RUN)/eval

test: install
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

clean-demo:
	rm -rf $(DEMO_OUT) $(DEMO_RUN)
