# The project's commands. Each target builds .venv first when it is missing or stale, so a fresh
# clone needs nothing installed by hand: `make run` (the main job), `make test`, `make lab`.
# .venv has the test extra and the cluster extra (submitit: campaign --slurm, and its tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= outputs

.PHONY: run test lab bench book fetch clean-outputs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,cluster]'
	touch $(STAMP)

## The main job: fetch CIFAR-10, execute every notebook with papermill on its defaults, write
## executed copies, figures and a results table beside the paper's numbers under $(OUT)/, and
## ends with the book of them: $(OUT)/book/index.html.
run: $(STAMP)
	$(BIN)/python -m resnet_lib fetch
	$(BIN)/python -m resnet_lib run-notebooks --out $(OUT)

## The executed notebooks as a static site to read in any browser, offline: $(OUT)/book/index.html
## (`make run` ends with it; this rebuilds it from $(OUT)/executed/ without running anything).
book: $(STAMP)
	$(BIN)/python -m resnet_lib book --out $(OUT)

## The test suite: unit tests, every notebook under papermill and nbval with tiny parameters.
test: $(STAMP)
	$(BIN)/python -m resnet_lib fetch
	$(BIN)/python -m pytest tests
	$(BIN)/python -m resnet_lib parameterize --tiny build/nbval
	$(BIN)/python -m pytest --nbval-lax -p no:cacheprovider build/nbval

## JupyterLab on the notebooks from this environment (ipywidgets and inline matplotlib work as
## installed), listening on localhost only, behind a fresh random token printed here and in the
## address JupyterLab prints. Root (as in containers) needs --allow-root, added only then.
lab: $(STAMP)
	@token=$$($(BIN)/python -c 'import secrets; print(secrets.token_hex(24))'); \
	echo "JupyterLab: http://127.0.0.1:8888/lab?token=$$token (if 8888 is taken, the port it reports below)"; \
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks \
	  --IdentityProvider.token=$$token $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

## Training speed of the library's loop against ../shared/bench/naive_reference.py, same run.
bench: $(STAMP)
	$(BIN)/python bench/bench_cifar.py

fetch: $(STAMP)
	$(BIN)/python -m resnet_lib fetch

clean-outputs:
	rm -rf $(OUT) build
