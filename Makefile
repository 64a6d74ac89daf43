# On a fresh machine (Python 3.10+ with venv):
#   make quickstart - create .venv, install keras-rnn, train the quick De->En
#                 translator on Multi30k, export it, serve it over gRPC on
#                 localhost, translate a few sentences through it, stop
#   make demo   - create .venv, install keras-rnn, train the demo models
#                 (the adding problem; sorting digits with attention)
#   make test   - create .venv, install keras-rnn + test deps, run the whole
#                 suite on the TensorFlow backend, then on the JAX backend
#   make image-test - build the serving image from the Dockerfile with buildah
#                 (root; installs buildah/debootstrap with apt when missing),
#                 run it on loopback with a tiny exported model, translate
#                 through it, stop it with SIGTERM, remove what it made
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The Dockerfile installs with the same constraints, not editable, with only
# the tensorflow and serving extras.
EXTRAS ?= tensorflow,jax,training,tensorboard,serving,test
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: quickstart demo test test-tensorflow test-jax image-test venv constraints bench clean

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

test: test-tensorflow test-jax

test-tensorflow: venv
	KERAS_BACKEND=tensorflow $(PY) -m pytest -q tests

test-jax: venv
	KERAS_BACKEND=jax $(PY) -m pytest -q tests

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
