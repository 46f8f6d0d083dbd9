# mmfc: the pipeline as make targets. Each target depends on the files of the stage before,
# so make redoes only what is out of date. PIPELINE picks the dataset and protocol.
PIPELINE ?= pipelines/synth.toml
PYTHON ?= python3
VENV := .venv
MMFC := $(VENV)/bin/mmfc
# The workdir a pipeline writes into and its data source, read with the standard library so it
# works before setup.
WORKDIR := $(shell $(PYTHON) -c "import tomllib,sys; print(tomllib.load(open('$(PIPELINE)','rb')).get('workdir','runs/synth'))" 2>/dev/null || echo runs/synth)
DATA_SOURCE := $(shell $(PYTHON) -c "import tomllib,sys; print(tomllib.load(open('$(PIPELINE)','rb')).get('data',{}).get('source','ntu'))" 2>/dev/null || echo ntu)
SYNTH_DATA := data/synth
# Clips per class, performer and camera of the demo's synthetic dataset (1,152 clips at 2).
SYNTH_PER_CLASS ?= 2
STAGE = $(MMFC) stage

.PHONY: setup setup-pose demo test test-fast docs-check poses crops train scores oof fuse report ablation bench bench-real clean help

help:
	@echo "make demo    - set up, generate the synthetic dataset, run every stage, write the report"
	@echo "make test    - set up and run the test suite"
	@echo "make test-fast - the suite without the slow end-to-end and real-clip tests (about 3 minutes)"
	@echo "make docs-check - the docs' links and paths exist, nothing refers to a path outside the repository"
	@echo "make setup-pose - the pose stage's runtime (ai-edge-litert) and its model files (BlazePose, face, hands)"
	@echo "make crops | train | scores | fuse | report  [PIPELINE=any/path/x.toml]: every declared branch the data supports"
	@echo "make train-<branch> | scores-<branch>  - one branch, e.g. train-rgb, train-skel, train-bone"
	@echo "make oof     - where fusion.fit_on fits on out-of-fold scores: each branch again on k folds (make fuse runs it)"
	@echo "make poses   - stage 0 for pipelines of plain videos (data.source = \"videos\"); make crops runs it"
	@echo "make ablation - train the ablation variants on the synthetic data and fill the table"
	@echo "make bench   - run the benchmarks under bench/ (all but bench-real)"
	@echo "make bench-real - mmfc on NW-UCLA and Penn Action, beside the official CTR-GCN code [CTRGCN=path], and NW-UCLA's four streams fused (hours)"

# torch is installed first, pinned: its CPU wheel is on the machine, and a loose requirement
# would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# The pose stage's optional runtime and its two BlazePose model files. The models are inside
# the official mediapipe wheel (never installed, only unpacked): pip picks the wheel for this
# Python and platform; where there is none, the manylinux cp311 one (the files are the same in
# every wheel). Every sha256 value is checked before anything is written; the table of files
# lives in model_files.py, so a new entry there unpacks again.
POSE_MODELS := models/blazepose
MEDIAPIPE := mediapipe==0.10.21
WHEELS := $(VENV)/wheels
$(POSE_MODELS)/.installed: $(VENV)/.installed mmfc/poses/model_files.py
	$(VENV)/bin/pip install --quiet -e '.[test,pose]'
	$(VENV)/bin/pip download --quiet --no-deps --only-binary=:all: -d $(WHEELS) $(MEDIAPIPE) || \
	  $(VENV)/bin/pip download --quiet --no-deps --only-binary=:all: -d $(WHEELS) $(MEDIAPIPE) \
	    --python-version 3.11 --platform manylinux_2_28_x86_64
	$(VENV)/bin/python -m mmfc.poses.model_files $(WHEELS)/mediapipe-0.10.21-*.whl $(POSE_MODELS)
	touch $@
setup-pose: $(POSE_MODELS)/.installed

# The suite runs the pose tests on the real clips too, so it needs the pose models.
test: setup setup-pose
	$(VENV)/bin/python -m pytest -q

# Everything but the tests marked slow (several stages end to end, training runs, real clips
# through the estimator): for the edit-test loop; CI runs `make test`.
test-fast: setup setup-pose
	$(VENV)/bin/python -m pytest -q -m "not slow"

# The documentation alone (tests/test_docs.py; `make test` runs it too).
docs-check: setup
	$(VENV)/bin/python -m pytest -q tests/test_docs.py

$(SYNTH_DATA)/.complete: | setup
	$(MMFC) synth --out $(SYNTH_DATA) --per-class $(SYNTH_PER_CLASS) --timings $(WORKDIR)/timings

# Only the synthetic pipeline needs generated data; the others point at a dataset on disk.
# Plain videos (data.source = "videos") need their poses first: stage 0.
ifeq ($(PIPELINE),pipelines/synth.toml)
CROP_INPUTS := $(SYNTH_DATA)/.complete
endif
ifeq ($(DATA_SOURCE),videos)
CROP_INPUTS := $(WORKDIR)/poses/poses.pkl
endif

# Stage 0 always runs: it skips every video whose poses are current and rewrites poses.pkl only
# when its content changes, so stage 1 is redone only when a video or a pose setting changed.
$(WORKDIR)/poses/poses.pkl: $(PIPELINE) FORCE | setup-pose
	$(STAGE) poses --pipeline $(PIPELINE) --preview 4
poses: $(WORKDIR)/poses/poses.pkl
FORCE:

$(WORKDIR)/crops/index.parquet: $(PIPELINE) $(CROP_INPUTS) | setup
	$(STAGE) crops --pipeline $(PIPELINE) --preview 8
crops: $(WORKDIR)/crops/index.parquet

# The branches stages 2 to 4 build: those the pipeline declares (`branches`) that the data
# supports, as `mmfc branches` prints them (saying on stderr why it leaves any out: RGB on data
# without videos). mmfc decides, from the pipeline and the crop store or the data, rather than
# make reading the TOML: the default branches and what the data holds are its to know. Asked
# once, and only when a target below needs the list (secondary expansion), so `make help` or
# `make crops` never ask.
.SECONDEXPANSION:
BUILT_BRANCHES = $(eval BUILT_BRANCHES := $$(shell $(MMFC) branches --pipeline $(PIPELINE)))$(BUILT_BRANCHES)
BUILT_CHECKPOINTS = $(BUILT_BRANCHES:%=$(WORKDIR)/train/%/best.pt)
BUILT_SCORES = $(BUILT_BRANCHES:%=$(WORKDIR)/scores/%.parquet)
# Fails a target whose branch list came back empty: `mmfc branches` said why above.
NEED_BRANCHES = @$(if $(BUILT_BRANCHES),:,echo "make: no branch to build for $(PIPELINE) (see the error above)" >&2; exit 2)

$(WORKDIR)/train/%/best.pt: $(WORKDIR)/crops/index.parquet
	$(STAGE) train --modality $* --pipeline $(PIPELINE) --resume
train-%: $(WORKDIR)/train/%/best.pt ;
train: $$(BUILT_CHECKPOINTS)
	$(NEED_BRANCHES)

$(WORKDIR)/scores/%.parquet: $(WORKDIR)/train/%/best.pt
	$(STAGE) scores --modality $* --pipeline $(PIPELINE)
scores-%: $(WORKDIR)/scores/%.parquet ;
scores: $$(BUILT_SCORES)
	$(NEED_BRANCHES)

# Where stage 4 fits on out-of-fold scores (fusion.fit_on = "oof", or "auto" on a thin validation
# split), every branch trained again on k folds of the training side: the branches `mmfc
# branches --oof` prints, none otherwise.
OOF_BRANCHES = $(eval OOF_BRANCHES := $$(shell $(MMFC) branches --oof --pipeline $(PIPELINE)))$(OOF_BRANCHES)
OOF_SCORES = $(OOF_BRANCHES:%=$(WORKDIR)/oof/%.parquet)

$(WORKDIR)/oof/%.parquet: $(WORKDIR)/crops/index.parquet
	$(STAGE) oof --modality $* --pipeline $(PIPELINE)
oof-%: $(WORKDIR)/oof/%.parquet ;
oof: $$(OOF_SCORES)

$(WORKDIR)/fusion/weights.json: $$(BUILT_SCORES) $$(OOF_SCORES)
	$(NEED_BRANCHES)
	$(STAGE) fuse --pipeline $(PIPELINE)
fuse: $(WORKDIR)/fusion/weights.json

$(WORKDIR)/report/report.html: $(WORKDIR)/fusion/weights.json
	$(STAGE) report --pipeline $(PIPELINE)
report: $(WORKDIR)/report/report.html

# The paper's ablation on this pipeline's data, as declared in mmfc/report/ablation.toml (the
# table the report reads too): each variant with overrides is trained and scored in
# $(ABLATION)/<variant>, on the main run's crops unless it crops its own; the others ("pose",
# "full") are the main run's scores. The table is read with the standard library, as above.
ABLATION := $(WORKDIR)/ablation
ABLATION_TABLE := mmfc/report/ablation.toml
READ_ABLATION = $(PYTHON) -c "import tomllib; variants = {v['name']: v for v in tomllib.load(open('$(ABLATION_TABLE)', 'rb'))['variant']}; $(1)"
# The trained variants whose number comes from branch $(1)'s scores; those with crops of their own.
ablation_variants = $(shell $(call READ_ABLATION,print(*(n for n, v in variants.items() if v.get('overrides') and v['scores'] == '$(1)'))))
ABLATION_RGB := $(call ablation_variants,rgb)
ABLATION_SKEL := $(call ablation_variants,skel)
ABLATION_OWN_CROPS := $(shell $(call READ_ABLATION,print(*(n for n, v in variants.items() if v.get('own_crops')))))
# The --set options of variant $(1): its folder, the crops it reads, its overrides.
ABL = --set workdir=$(ABLATION)/$(1) $(if $(filter $(1),$(ABLATION_OWN_CROPS)),,--set crops_from=$(WORKDIR)) \
  $(shell $(call READ_ABLATION,print(*('--set ' + o for o in variants['$(1)']['overrides']))))
ablation_crops = $(if $(filter $(1),$(ABLATION_OWN_CROPS)),$(ABLATION)/$(1)/crops/index.parquet,$(WORKDIR)/crops/index.parquet)
ABLATION_SCORES := $(ABLATION_RGB:%=$(ABLATION)/%/scores/rgb.parquet)
ABLATION_SKEL_SCORES := $(ABLATION_SKEL:%=$(ABLATION)/%/scores/skel.parquet)
ABLATION_CROPS := $(ABLATION_OWN_CROPS:%=$(ABLATION)/%/crops/index.parquet)

$(ABLATION_CROPS): $(ABLATION)/%/crops/index.parquet: $(PIPELINE) $(CROP_INPUTS) | setup
	$(STAGE) crops --pipeline $(PIPELINE) $(call ABL,$*)
$(foreach v,$(ABLATION_RGB),$(eval $(ABLATION)/$(v)/scores/rgb.parquet: $(call ablation_crops,$(v))))
$(foreach v,$(ABLATION_SKEL),$(eval $(ABLATION)/$(v)/scores/skel.parquet: $(call ablation_crops,$(v))))

$(ABLATION_SCORES): $(ABLATION)/%/scores/rgb.parquet:
	$(STAGE) train --modality rgb --pipeline $(PIPELINE) $(call ABL,$*) --resume
	$(STAGE) scores --modality rgb --pipeline $(PIPELINE) $(call ABL,$*)

$(ABLATION_SKEL_SCORES): $(ABLATION)/%/scores/skel.parquet:
	$(STAGE) train --modality skel --pipeline $(PIPELINE) $(call ABL,$*) --resume
	$(STAGE) scores --modality skel --pipeline $(PIPELINE) $(call ABL,$*)

ablation: $(ABLATION_SCORES) $(ABLATION_SKEL_SCORES) $(WORKDIR)/fusion/weights.json
	$(STAGE) report --pipeline $(PIPELINE)

# Make deletes a target whose recipe is interrupted (Ctrl-C, a killed job) once the recipe has
# touched it. Every stage writes its files whole (mmfc/atomic.py) and a rerun resumes from them
# (train --resume), so a stage's outputs are kept: deleting best.pt would throw away the training.
.PRECIOUS: $(WORKDIR)/poses/poses.pkl $(WORKDIR)/crops/index.parquet $(WORKDIR)/train/%/best.pt \
  $(WORKDIR)/scores/%.parquet $(WORKDIR)/oof/%.parquet $(WORKDIR)/fusion/weights.json $(WORKDIR)/report/report.html \
  $(ABLATION_CROPS) $(ABLATION_SCORES) $(ABLATION_SKEL_SCORES)

demo: setup $(WORKDIR)/report/report.html
	@$(MMFC) timings --pipeline $(PIPELINE)
	@echo "Report: $(WORKDIR)/report/report.md and report.html"

bench: setup
	@for b in $(filter-out bench/bench_real.py bench/bench_streams.py,$(wildcard bench/bench_*.py)); do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

# The figures on real recordings (docs/benchmarks.md, section 16): hours of training on 2 cores,
# so not part of `make bench`. CTRGCN: a local checkout of Uason-Chen/CTR-GCN.
CTRGCN ?= ../peers/CTR-GCN
bench-real: setup
	$(VENV)/bin/python bench/bench_real.py --ctrgcn $(CTRGCN)
	$(VENV)/bin/python bench/bench_streams.py

clean:
	rm -rf runs data/synth
