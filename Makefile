# portal_bridge: every target sets itself up first (idempotent, cached in .venvs, .ws and .tools).
# PORTAL_ENV picks the environment (jazzy-py312, the default and primary; kilted-py310).
.PHONY: setup test test-matrix demo bench lint format clean

setup:
	@scripts/setup.sh

# The primary environment's whole suite; under CI (CI=true) the Python 3.10 matrix as well.
test: setup
	@scripts/test.sh

# Both environments, as CI runs them.
test-matrix: setup
	@TEST_MATRIX=1 scripts/test.sh

demo: setup
	@scripts/demo.sh

bench: setup
	@scripts/bench.sh

lint: setup
	@bash -c 'source scripts/common.sh && activate_ros && ruff check portal_bridge bench && ruff format --check portal_bridge bench'

format: setup
	@bash -c 'source scripts/common.sh && activate_ros && ruff format portal_bridge bench && ruff check --fix portal_bridge bench'

clean:
	rm -rf .ws
