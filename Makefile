# blocklist-agent: developer entry points. Every target installs what it needs first.
.PHONY: deps check lint test unit example demo bench deb clean

deps:
	@bash scripts/install-deps.sh

lint: deps
	.venv/bin/ruff check agent bench lab tests
	.venv/bin/mypy

test: deps
	.venv/bin/python -m pytest -q

# The pure unit tests alone (no root, no namespaces): about a minute.
unit: deps
	.venv/bin/python -m pytest -q -m "not lab and not system"

# The README's test command (CI runs it through .ci/run): install, lint, type-check, test.
check: lint test

# The README's main job: dry-run sync of the example signed feed, printing the plan.
example: deps
	@bash examples/quickstart.sh

# The whole product in a namespace lab, narrated with PASS/FAIL lines (root; host untouched).
demo: deps
	.venv/bin/python -m lab.demo

bench: deps
	.venv/bin/python bench/pipeline.py
	.venv/bin/python bench/nft_apply.py
	.venv/bin/python bench/isolation.py
	.venv/bin/python bench/e2e.py

# dist/blocklist-agent_<version>_all.deb, built from packaging/deb/ with debhelper + dh-python.
deb: deps
	bash scripts/build-deb.sh

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache dist build *.egg-info
