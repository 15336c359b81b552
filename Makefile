# Two entry points for a newcomer: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch and torchvision are installed as a matched pair before the package, so the
# resolver never mixes a torchvision with a torch it was not built against.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install browser demo test bench train-default clean

$(BIN)/fakescope: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/fakescope

demo: install
	$(BIN)/python -m fakescope.demo demo-out

# Report and web-page tests drive Debian's headless Chromium; without it they skip.
browser:
	@command -v chromium >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) || \
	  echo "chromium could not be installed: browser tests will be skipped"

test: install browser
	$(BIN)/python -m pytest -q

# The default detector's recipe: face crops of ../shared/data (cut once), then training.
DATASETS := faceswap-lfw photoshop-ciplab dfdc-faces
crops/%/face_crops.json: | install
	$(BIN)/fakescope faces ../shared/data/$* crops/$*

train-default: $(DATASETS:%=crops/%/face_crops.json)
	$(BIN)/fakescope train configs/default.yaml

bench: install
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/scan_throughput.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
