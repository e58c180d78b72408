# portal_bridge: every target sets itself up first (idempotent, cached in .venv, .ws and .tools).
.PHONY: setup test demo bench lint format clean

setup:
	@scripts/setup.sh

test: setup
	@scripts/test.sh

demo: setup
	@scripts/demo.sh

bench: setup
	@scripts/bench.sh

lint: setup
	@bash -c 'source scripts/common.sh && source .venv/bin/activate && ruff check portal_bridge && ruff format --check portal_bridge'

format: setup
	@bash -c 'source .venv/bin/activate && ruff format portal_bridge && ruff check --fix portal_bridge'

clean:
	rm -rf .ws
