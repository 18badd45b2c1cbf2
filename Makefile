# Two commands do everything on a fresh machine (see README.md):
#   make run    build the lesson and grade the bundled sample class in the sandbox
#   make test   run the whole test suite
# Both create the virtual environment .venv/ first when it is missing. Conda users who activated
# the environment from environment.yml pass PYTHON=python to use it instead.
# `make student` creates .venv-student/, the students' environment: the lesson and Jupyter, no nbgrader.

PYTHON ?= .venv/bin/python
VENV_READY := .venv/.installed

ifeq ($(PYTHON),.venv/bin/python)
ENV := $(VENV_READY)
endif

# mermaid (npm), which `python -m figures` runs in Chromium to draw the block diagrams.
MERMAID := figures/mermaid/node_modules/.package-lock.json

.PHONY: run test test-fast build figures check system-deps solution student

$(VENV_READY): requirements.txt
	@python3 -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed, found " + sys.version'
	test -x .venv/bin/python || python3 -m venv .venv
	.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# The students' environment: what the lesson needs and none of the instructor tools (no nbgrader
# sidebar or Formgrader menu in their JupyterLab, no test tools).
STUDENT_READY := .venv-student/.installed

student: $(STUDENT_READY)
	@echo "Open the lessons with: .venv-student/bin/jupyter lab notebooks/"

$(STUDENT_READY): requirements-student.txt
	@python3 -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed, found " + sys.version'
	test -x .venv-student/bin/python || python3 -m venv .venv-student
	.venv-student/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-student.txt
	touch $@

run: $(ENV) system-deps
	$(PYTHON) -m grader build
	$(PYTHON) -m grader grade

solution: $(ENV)
	$(PYTHON) -m grader build
	$(PYTHON) -m grader run-solution

# Prerequisites are made in order: system-deps installs npm before mermaid needs it.
test: $(ENV) system-deps $(MERMAID)
	$(PYTHON) -m pytest

# Everyday work (about a minute): everything but the tests marked slow, which start kernels, sandboxes,
# servers, browsers or nbgrader, train, or repeat checks on more seeds.
test-fast: $(ENV) system-deps $(MERMAID)
	$(PYTHON) -m pytest -m "not slow"

system-deps:
	@bash scripts/system-deps.sh

# Without npm the diagrams cannot be redrawn: say so and go on (their tests are skipped).
$(MERMAID): figures/mermaid/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix figures/mermaid --ignore-scripts --no-audit --no-fund --loglevel=error; \
	else echo "Note: npm is missing, so the block diagrams cannot be redrawn." >&2; fi

build: $(ENV)
	$(PYTHON) -m grader build

# Compares each figure's recorded inputs: no browser or mermaid needed.
check: $(ENV)
	$(PYTHON) -m grader build --check
	$(PYTHON) -m figures --check

figures: $(ENV) $(MERMAID)
	$(PYTHON) -m figures
