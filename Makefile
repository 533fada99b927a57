# `make demo` sets everything up and reviews a sample change with the embedded model;
# `make test` runs every test (`make test-fast` skips the end-to-end model tests).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast lint docs adapter
setup: $(VENV)/.revisor-setup

$(VENV)/.revisor-setup: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

# Three reviewer comments on a sample change: Revisor posts what it is confident of and holds the
# rest back, saying how sure it was.
demo: setup
	@$(VENV)/bin/revisor review examples/server.diff \
	  --comment 'server/listen.go:14-15=```suggestion func (s *Server) Start(address string) error { listener, err := net.Listen("tcp", address) ```' \
	  --comment 'server/listen.go:57-59=Stop should return the error instead of logging it' \
	  --comment 'server/listen.go:13=typo: listner -> listener'

# Two test processes: the tests that share the session's model engines and trained adapter run
# in one of them (see tests/conftest.py), everything else beside them.
PYTEST := $(PY) -m pytest -n 2 --dist loadgroup

test: setup
	$(PYTEST) -v -rs --durations=25

test-fast: setup
	$(PYTEST) -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .

# docs/configuration.md and docs/cli.md, generated from the code (a test fails when they are stale)
docs: setup
	$(PY) -m revisor.bot.reference

# Rebuild Revisor's default adapter (revisor/model/default_adapter) from ../shared/datasets: split (dev from
# codereviewer/train.jsonl; pairs sharing code with the benchmark dropped), train on the pairs that
# fit 256 tokens, then train that adapter further on the longer ones that fit 512 (but for the 200
# kept aside to calibrate), then a last pass over every pair that fits 512 (but for those 200),
# merge into the default model, calibrate for 30% precision with one answer a record (fitted on the
# dev records and on those 200, thresholded on dev). Each step leaves its file; run it again after
# an interruption and it goes on where it stopped (about four hours on two cores).
DATA ?= ../shared/datasets
RUN ?= runs/default-adapter
REVISOR := $(VENV)/bin/revisor

$(RUN)/split/train.jsonl: | setup
	$(REVISOR) data split $(DATA)/codereviewer/train.jsonl $(DATA)/codereview-new/validation.jsonl \
	  $(DATA)/codereview-new/test.jsonl --dev-from $(DATA)/codereviewer/train.jsonl --dev-size 300 \
	  --exclude $(DATA)/codereviewer/test.jsonl --output $(RUN)/split

$(RUN)/adapter/revisor_train.json: $(RUN)/split/train.jsonl
	$(REVISOR) train --data $< --output $(RUN)/adapter --max-length 256 --learning-rate 1e-3 \
	  --save-steps 10 --resume

# The records too long for the first pass, from the benchmark's pool (the first 200 are kept aside
# for calibration), and from every pool (the second pass trains on them, but for those 200).
$(RUN)/split/longer.jsonl: $(RUN)/adapter/revisor_train.json
	$(REVISOR) data untrained $(RUN)/split/train.jsonl --max-length 256 \
	  --from $(DATA)/codereviewer/train.jsonl --output $(RUN)/split/untrained.jsonl
	head -n 200 $(RUN)/split/untrained.jsonl > $(RUN)/split/untrained-200.jsonl
	$(REVISOR) data untrained $(RUN)/split/train.jsonl --max-length 256 --output $(RUN)/split/untrained-all.jsonl
	grep -vxFf $(RUN)/split/untrained-200.jsonl $(RUN)/split/untrained-all.jsonl > $@.tmp && mv $@.tmp $@

$(RUN)/adapter-longer/revisor_train.json: $(RUN)/split/longer.jsonl
	$(REVISOR) train --data $< --from-adapter $(RUN)/adapter --output $(RUN)/adapter-longer --max-length 512 \
	  --learning-rate 5e-4 --save-steps 10 --resume

$(RUN)/split/all-but-held.jsonl: $(RUN)/split/longer.jsonl
	grep -vxFf $(RUN)/split/untrained-200.jsonl $(RUN)/split/train.jsonl > $@.tmp && mv $@.tmp $@

$(RUN)/adapter-epoch2/revisor_train.json: $(RUN)/split/all-but-held.jsonl $(RUN)/adapter-longer/revisor_train.json
	$(REVISOR) train --data $< --from-adapter $(RUN)/adapter-longer --output $(RUN)/adapter-epoch2 --max-length 512 \
	  --learning-rate 3e-4 --save-steps 10 --resume

adapter: $(RUN)/adapter-epoch2/revisor_train.json
	cp $(RUN)/adapter-epoch2/adapter_model.safetensors $(RUN)/adapter-epoch2/adapter_config.json \
	  $(RUN)/adapter-epoch2/revisor_train.json $(RUN)/split/split.json revisor/model/default_adapter/
	$(REVISOR) prepare-model
	$(REVISOR) calibrate --dataset $(RUN)/split/dev.jsonl --fit-also $(RUN)/split/untrained-200.jsonl \
	  --samples 1 --target-precision 0.3 --output revisor/model/default_adapter/calibration.json
