# On a fresh machine (Python 3.10+ with venv):
#   make quickstart - create .venv, install keras-rnn, train the quick De->En
#                 translator on Multi30k, export it, serve it over gRPC on
#                 localhost, translate a few sentences through it, stop
#   make demo   - create .venv, install keras-rnn, train the demo models
#                 (the adding problem; sorting digits with attention)
#   make test   - create .venv, install keras-rnn + test deps, run the whole
#                 suite on the TensorFlow backend, then on JAX, the library
#                 and training tests on PyTorch, then the install matrix
#   make image-test - build the serving image from the Dockerfile with buildah
#                 (root; installs buildah/debootstrap with apt when missing),
#                 run it on loopback with a tiny exported model, translate
#                 through it, stop it with SIGTERM, remove what it made
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The Dockerfile installs with the same constraints, not editable, with only
# the tensorflow and serving extras.
EXTRAS ?= tensorflow,jax,torch,training,tensorboard,serving,test
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: quickstart demo test test-tensorflow test-jax test-install image-test venv constraints bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[$(EXTRAS)]"
	touch $@

quickstart: venv
	$(PY) -m keras_rnn.serving.quickstart

demo: venv
	$(PY) examples/adding_problem.py
	$(PY) examples/sort_digits.py

test: test-tensorflow test-jax test-torch test-install

test-tensorflow: venv
	KERAS_BACKEND=tensorflow $(PY) -m pytest -q tests --ignore=tests/install

test-jax: venv
	KERAS_BACKEND=jax $(PY) -m pytest -q tests --ignore=tests/install

# PyTorch: the library (decoding, TBPTT, the TF Addons annex), training and
# the command line; export and serving run on TensorFlow whatever trained the
# model, so their tests stay on the other two halves. One intra-op thread:
# the tests' tensors are tiny, and on a busy 2-core machine PyTorch's two
# OpenMP threads wait on each other (the digit-reversal test of
# tests/keras_rnn/test_seq2seq_model.py: 256 s with them, 10 s with one).
.PHONY: test-torch
test-torch: venv
	OMP_NUM_THREADS=1 KERAS_BACKEND=torch $(PY) -m pytest -q tests/keras_rnn tests/training tests/cli

# The install matrix: the wheel, installed with pip into a new virtual
# environment per promised extra, runs that extra's commands (tests/install/).
test-install: venv
	$(PY) -m pytest -q tests/install

image-test: venv
	$(PY) serving/container/image_test.py

bench: venv
	KERAS_BACKEND=tensorflow $(PY) benchmarks/bench_layers.py
	KERAS_BACKEND=jax $(PY) benchmarks/bench_layers.py
	KERAS_BACKEND=tensorflow $(PY) benchmarks/bench_decoding.py
	KERAS_BACKEND=jax $(PY) benchmarks/bench_decoding.py

constraints: venv
	( sed -n '1,2p' requirements/constraints.txt; $(PY) -m pip freeze --exclude-editable ) > requirements/constraints.tmp
	mv requirements/constraints.tmp requirements/constraints.txt

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
