# Two commands on a fresh machine: `make run` and `make test`. Everything else is optional.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Installs come from the lock files, every package pinned with its hashes, so transitive versions do not
# float between machines and builds: requirements/runtime.txt (what the services import: `make run`, the
# image) and requirements/dev.txt (that and the test and lint tools: `make setup`, `make test`, ...).
# `make lock` writes both from pyproject.toml, with uv at the version pinned here.
RUNTIME_LOCK := requirements/runtime.txt
DEV_LOCK := requirements/dev.txt
UV := uv==0.13.9
STAMP := $(VENV)/.installed
RUNTIME_STAMP := $(VENV)/.installed-runtime

.PHONY: setup browser runtime lock test lint contracts prices run bench chaos clean swagger-ui

# install_lock <lock file>: the venv, pip, the locked packages (hashes checked), then this project itself.
define install_lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==25.3
	$(BIN)/pip install -q --require-hashes -r $(1)
	$(BIN)/pip install -q --no-deps -e .
endef

setup: $(STAMP) browser

# The console's browser tests (tests/console) drive Debian's chromium through chromium-driver: installed here
# with apt-get when missing (needs root; a no-op when both are there). Not root: a warning, and those tests
# fail saying what to install.
BROWSER_PACKAGES := chromium chromium-driver
browser:
	@if ! test -x /usr/bin/chromium || ! test -x /usr/bin/chromedriver; then \
		if test "$$(id -u)" = 0; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES) >/dev/null; \
		else \
			echo "make setup: $(BROWSER_PACKAGES) missing; as root: apt-get install -y $(BROWSER_PACKAGES)" >&2; \
		fi; \
	fi

$(STAMP): pyproject.toml $(DEV_LOCK)
	$(call install_lock,$(DEV_LOCK))
	touch $(RUNTIME_STAMP) $(STAMP)

# The runtime set only (about 80 packages instead of 155): what `make run` needs.
runtime: $(RUNTIME_STAMP)

$(RUNTIME_STAMP): pyproject.toml $(RUNTIME_LOCK)
	$(call install_lock,$(RUNTIME_LOCK))
	touch $(RUNTIME_STAMP)

# After changing the dependencies in pyproject.toml: rewrite both lock files (needs PyPI), then commit them.
lock:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q $(UV)
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --no-header -q \
		-o $(RUNTIME_LOCK)
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --generate-hashes \
		--no-header -q -o $(DEV_LOCK)

# Two workers (pytest-xdist: every test isolates its schema, key prefix, namespace and ports), then the
# tests that disturb a server all the others share, alone.
test: setup
	$(BIN)/pytest -q -n 2 -m "not serial" --durations=25
	$(BIN)/pytest -q -m serial

lint: setup
	$(BIN)/ruff check contracts libs services tests
	$(BIN)/ruff format --check contracts libs services tests
	$(BIN)/mypy

# The whole system in one process (memory bus, in-memory storage, simulated providers). Ctrl-C stops it.
run: runtime
	LOG_FORMAT=$${LOG_FORMAT:-console} $(BIN)/python -m services.embedded

# The distributed stack on this machine's RabbitMQ (or moto's SQS)/PostgreSQL/Redis, driven through the gateway;
# prints a table and, last, one JSON line (phases and numbers: `python -m tests.bench.run --help`).
# Options: BENCH_ARGS="-n 2000 -c 32 --transport amqp|sqs --mode generation|delivery|campaign" (sqs: -n 200 by
# default). --mode campaign: ONE campaign of -n fans (default 5000), its status polled while it runs; exits 1
# when a fan was missed or reached twice, a message was dead-lettered or the final status is untrue.
bench: setup
	$(BIN)/python -m tests.bench.run $(BENCH_ARGS)

# Faults under steady load (service kills, broker/database/Redis restarts, platform outage, provider hang) and
# through them one campaign of 1,000 fans (CHAOS_ARGS="--campaign-fans N"), then the invariants: nothing lost
# or stuck, nothing sent twice, no rate window exceeded, costs add up, every campaign fan reached once with a
# truthful final status, no dead letters.
chaos: setup
	CHAOS_RESTART_SERVERS=1 $(BIN)/python -m tests.chaos.run $(CHAOS_ARGS)

# The image (hybrid-orchestrator:local) with docker when its engine answers, else podman; the Dockerfile's FROM
# image is built locally (debootstrap) when it cannot be pulled. Behind a TLS-intercepting proxy pass the CA
# bundle pip must trust: `make image PIP_CA=/etc/ssl/certs/ca-certificates.crt` (a build secret, in no layer).
# README, "Containers without Docker Hub".
PIP_CA ?=
image:
	PIP_CA="$(PIP_CA)" deploy/podman/images.sh image

# Debian-built stand-ins for RabbitMQ, PostgreSQL and Redis, only when their upstream images cannot be pulled.
standins:
	deploy/podman/images.sh standins

# The image run as the Kubernetes manifests run it and the compose stack (demo profile) answering a workflow
# with delivery through the gateway, traced; needs podman and root (deploy/podman/setup-host.sh installs it).
PODMAN_COMPOSE := podman-compose==1.6.0
test-containers: setup
	ENGINE=podman PIP_CA="$(PIP_CA)" deploy/podman/images.sh image
	ENGINE=podman deploy/podman/images.sh standins
	test -x $(BIN)/podman-compose || $(BIN)/pip install -q $(PODMAN_COMPOSE)
	HO_CONTAINER_TESTS=1 $(BIN)/pytest -q -p no:cacheprovider --timeout 600 tests/containers

contracts: setup
	$(BIN)/python -m contracts.export

# Rewrites services/cost_tracker/prices.toml from the genai-prices package's list prices (offline: the
# package ships its data); review the diff, then commit it. Bump the pin in pyproject.toml for newer prices.
prices: setup
	$(BIN)/pip install -q -e '.[prices]'
	$(BIN)/python -m services.cost_tracker.price_source

# Swagger UI for /api/docs, as the pinned npm package publishes it: the files the gateway serves, its licence
# and its package.json (the version) into services/gateway/console/vendor/swagger-ui/; review, then commit.
SWAGGER_UI := swagger-ui-dist@5.35.0
SWAGGER_UI_DIR := services/gateway/console/vendor/swagger-ui
SWAGGER_UI_FILES := swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css LICENSE NOTICE package.json
swagger-ui:
	rm -rf build/swagger-ui && mkdir -p build/swagger-ui
	cd build/swagger-ui && npm pack -q $(SWAGGER_UI) >/dev/null && tar xzf *.tgz
	for f in $(SWAGGER_UI_FILES); do cp build/swagger-ui/package/$$f $(SWAGGER_UI_DIR)/; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
